"""What every CLI command shares: JSON or human output, clean errors, progress on stderr."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import typer
import typer.core
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from operators.errors import ShaketuneError

stderr = Console(stderr=True)

JsonOption = typer.Option(False, "--json", help="Print one JSON object on stdout instead of text.")


def emit(result: dict[str, Any], as_json: bool, lines: list[str]) -> None:
    """Print ``result`` as one JSON object, or ``lines`` for a human."""
    if as_json:
        sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    else:
        for line in lines:
            typer.echo(line)


def literal(text: str) -> str:
    """Help text shown as written: typer reads help as rich markup, where a range like ``[start:stop]``
    is a tag and vanishes, so brackets are escaped (only where typer renders help with rich)."""
    return escape(text) if getattr(typer.core, "DEFAULT_MARKUP_MODE", None) == "rich" else text


def warn(message: str) -> None:
    """A warning on stderr, shown as written (brackets in it are not markup)."""
    stderr.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)


def fail(message: str, as_json: bool, code: int = 1) -> None:
    """Report an error without a stack trace and exit."""
    if as_json:
        sys.stdout.write(json.dumps({"error": message}) + "\n")
    stderr.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def handle_errors(command: Callable[..., None]) -> Callable[..., None]:
    """Turn expected failures into one clear message; tracebacks only with SHAKETUNE_DEBUG=1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        as_json = bool(kwargs.get("as_json", False))
        try:
            command(*args, **kwargs)
        except ShaketuneError as exc:
            fail(str(exc), as_json)
        except KeyboardInterrupt:
            fail("interrupted", as_json, code=130)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            if os.environ.get("SHAKETUNE_DEBUG"):
                raise
            fail(
                f"unexpected {exc.__class__.__name__}: {str(exc)[:300]} "
                "(rerun with SHAKETUNE_DEBUG=1 for the traceback)",
                as_json,
            )

    return wrapper


def wide_console() -> Console:
    """stdout, wide enough for tables even when piped (rich would assume 80 columns)."""
    console = Console()
    return console if console.is_terminal else Console(width=180)


def progress_bar() -> Progress:
    """A progress bar on stderr, so stdout stays clean for --json."""
    return Progress(
        TextColumn("{task.description}", style="bold", markup=False),  # study names may hold brackets
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),  # an estimate from the pace so far
        console=stderr,
        transient=True,
    )
