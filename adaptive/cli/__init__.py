"""The ``shaketune`` command line."""

from __future__ import annotations

import os

# Before torch loads OpenMP: idle threads sleep instead of spinning, so a service, its workers and other
# processes sharing the cores do not slow each other down many times over (measured: 15x with two
# processes on 2 cores). OMP_WAIT_POLICY=ACTIVE gets the spinning back for a single process.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import typer  # noqa: E402

from adaptive.cli import flow, measure, models, search, service  # noqa: E402

app = typer.Typer(
    name="shaketune",
    help="Choose CypherTalk shaking settings for private fine-tuning, and apply them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
flow.register(app)
measure.register(app)
models.register(app)
search.register(app)
service.register(app)
