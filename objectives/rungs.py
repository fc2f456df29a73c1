"""Multi-fidelity accuracy: private tuning pauses at rungs for a validation score and goes on only while
the caller promotes it. Which trials go on (successive halving over a study) is decided in ``adaptive/``;
this module only says where the rungs lie and carries the decision into the trial."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

REDUCTION = 3  # successive halving's factor: a rung at a third of the steps, and a third go on
RUNGS = 1  # pauses before the full budget


def rung_steps(steps: int, rungs: int = RUNGS, reduction: int = REDUCTION) -> tuple[int, ...]:
    """The step counts at which a budget of ``steps`` pauses: ``steps / reduction**k`` for k = rungs..1,
    rounded up, distinct and below ``steps`` (a budget too short for a rung has none)."""
    points = {-(-steps // reduction**k) for k in range(rungs, 0, -1)}
    return tuple(sorted(p for p in points if 0 < p < steps))


Promote = Callable[[int, float], bool]  # (steps done, private validation accuracy) -> go on?


def always(_steps: int, _accuracy: float) -> bool:
    return True


@dataclass(frozen=True)
class Rungs:
    """Where a trial's private tuning pauses for a validation score, and who decides it goes on."""

    steps: tuple[int, ...]
    promote: Promote = always
