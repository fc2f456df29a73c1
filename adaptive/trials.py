"""What a stored trial is: its objectives, whether it was measured to the end, met the study's
constraints, or spent private tuning. Every module that reads trials back asks here, so a screened or
rung-stopped candidate means the same thing to the front, the screening, the budget and the dashboard."""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

SCREENED_ATTR = "screened"  # why a candidate stopped before tuning (adaptive/screening.py)


def objectives_of(trial: FrozenTrial) -> tuple[float, float, float]:
    accuracy, cost, leakage = trial.values
    return accuracy, cost, leakage


def is_measured(trial: FrozenTrial) -> bool:
    """Complete, trained to the end (not stopped early), with all objectives."""
    return (
        trial.state == TrialState.COMPLETE
        and trial.values is not None
        and not trial.user_attrs.get("stopped_early", False)
    )


def is_feasible(trial: FrozenTrial) -> bool:
    """Meets every constraint the study recorded for it (the caps as the trial was measured)."""
    return all(v <= 0 for v in trial.constraints.values())


def measured_feasible(study: optuna.Study) -> list[FrozenTrial]:
    """Trials measured to the end that meet the study's constraints: what a front is made of."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return [t for t in complete if is_measured(t) and is_feasible(t)]


def tuned(trial: FrozenTrial) -> bool:
    """A complete trial that spent private tuning (at full budget or up to a rung)."""
    return trial.state == TrialState.COMPLETE and not trial.user_attrs.get(SCREENED_ATTR)


def count_tuned(study: optuna.Study) -> int:
    """Trials that count towards a trial budget: complete ones that tuned (screened candidates do not)."""
    return sum(tuned(t) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
