"""Inputs checked at the door: a target's data sources and model are loaded when they are registered
(or when ``optimize`` creates a study), not three failed trials later; and the service reads only
inside its data roots.

The service is a network-facing process that runs as whoever started it, so a request may name only
files and model directories under the roots it was given (``serve --data-root DIR``); paths are
resolved (symbolic links followed) before they are compared. Hub sources (``hf:``) and hub model names
read no local file by name and are checked by loading them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from objectives.models import DEFAULT_MODEL, check_model
from objectives.task import TaskSpec
from operators.errors import ShaketuneError


class OutsideDataRoots(ShaketuneError):
    """A request named a file or directory outside the directories the service may read."""


def inside(path: str | Path, roots: Sequence[Path]) -> bool:
    resolved = Path(path).expanduser().resolve()
    return any(resolved == root or resolved.is_relative_to(root) for root in roots)


def _is_local_model(name: str) -> bool:
    return Path(name).expanduser().exists() or name.startswith((".", "/", "~")) or name.count("/") > 1


def check_access(task: TaskSpec, model: str, roots: Sequence[Path]) -> None:
    """Refuse sources and model directories outside ``roots`` (without opening them)."""
    shown = ", ".join(map(str, roots))
    if any(ord(char) < 32 or ord(char) == 127 for char in model):
        raise ShaketuneError("the model name holds control characters")
    for name, source in (("train", task.train), ("eval", task.eval), ("public", task.public)):
        if not source.is_hub and not inside(source.location, roots):
            raise OutsideDataRoots(
                f"{name} source {source.location!r} is outside the data roots this service may read ({shown})"
            )
    if model != DEFAULT_MODEL and _is_local_model(model) and not inside(model, roots):
        raise OutsideDataRoots(f"model {model!r} is outside the data roots this service may read ({shown})")


def check_inputs(task: TaskSpec, model: str, roots: Sequence[Path] | None = None) -> dict[str, int]:
    """Every check a target's inputs must pass before anything is stored: access (when ``roots`` is
    given), each source loads with its columns and enough rows, public text disjoint from the
    private rows, the model's config and tokenizer load. Returns the row counts."""
    if roots is not None:
        check_access(task, model, roots)
    elif any(ord(char) < 32 or ord(char) == 127 for char in model):
        raise ShaketuneError("the model name holds control characters")
    rows = task.check()
    check_model(model, causal=task.is_lm)
    return rows
