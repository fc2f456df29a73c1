"""Selection policies: which point of the feasible Pareto front a target should use.

``max-accuracy`` (default): the most accurate setting within the leakage and cost caps; ties go to lower
leakage, then lower cost. ``knee``: the setting closest to the ideal point (best accuracy, cost and
leakage seen on the front) after scaling each objective to [0, 1] over the front; a balanced choice
when no cap says what matters most.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from optuna.trial import FrozenTrial

from adaptive.study import objectives_of, trial_settings
from objectives.trial import TrialSettings
from operators.errors import SettingsError

POLICIES = ("max-accuracy", "knee")
DEFAULT_POLICY = "max-accuracy"


@dataclass(frozen=True)
class Choice:
    """A chosen trial with its objectives and the reason in words."""

    trial_number: int
    settings: TrialSettings
    accuracy: float
    cost_gflops: float
    leakage: float
    policy: str
    reason: str


def choose(front: list[FrozenTrial], policy: str = DEFAULT_POLICY) -> Choice:
    """Apply ``policy`` to a non-empty feasible front."""
    if policy not in POLICIES:
        raise SettingsError(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")
    if not front:
        raise ValueError("empty front")
    if policy == "max-accuracy":
        best = min(front, key=lambda t: (-objectives_of(t)[0], objectives_of(t)[2], objectives_of(t)[1]))
        reason = f"highest accuracy among {len(front)} feasible Pareto-optimal settings"
    else:
        best = min(front, key=_distance_to_ideal(front))
        reason = f"closest to the ideal point among {len(front)} feasible Pareto-optimal settings"
    accuracy, cost, leakage = objectives_of(best)
    return Choice(best.number, trial_settings(best), accuracy, cost, leakage, policy, reason)


def _distance_to_ideal(front: list[FrozenTrial]):
    points = [objectives_of(t) for t in front]
    columns = list(zip(*points, strict=True))
    lows = [min(c) for c in columns]
    spans = [(max(c) - min(c)) or 1.0 for c in columns]
    ideal = (1.0, 0.0, 0.0)  # accuracy scaled so that 1 is best, cost and leakage so that 0 is

    def distance(trial: FrozenTrial) -> float:
        scaled = [(v - low) / span for v, low, span in zip(objectives_of(trial), lows, spans, strict=True)]
        return math.dist(scaled, ideal) + trial.number * 1e-12  # ties: the earlier trial

    return distance
