"""The ``shaketune`` command line."""

from __future__ import annotations

import os

import typer

from adaptive.cli import flow, measure, search

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

app = typer.Typer(
    name="shaketune",
    help="Choose CypherTalk shaking settings for private fine-tuning, and apply them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
flow.register(app)
measure.register(app)
search.register(app)
