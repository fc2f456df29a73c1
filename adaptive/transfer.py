"""Warm starts: a new study starts from an earlier study's front, and from what it learnt about leakage
(which depends on the model and the shaking, not on the task's labels)."""

from __future__ import annotations

from collections.abc import Callable

import optuna
from optuna.trial import TrialState

from adaptive import screening
from adaptive.space import SearchSpace
from adaptive.study import StudyConfig, StudyError, feasible_front, shaking_key, study_config, trial_settings
from adaptive.trials import SCREENED_ATTR
from objectives.trial import TrialSettings

TRANSFER_MARGIN = 0.05  # a shaking transfers as over the cap only if it broke it by this much there


def warm_start(
    study: optuna.Study,
    source: optuna.Study,
    space: SearchSpace,
    config: StudyConfig | None = None,
    cost_of: Callable[[TrialSettings], float] | None = None,
) -> int:
    """Enqueue the settings of ``source``'s feasible front; returns how many were enqueued.

    With ``config`` and ``cost_of`` (this study's config and cost in GFLOP) it also transfers what
    ``source`` learnt about leakage, which depends on the model and the shaking, not on the task's labels:
    see :func:`transfer_leakage`."""
    front = feasible_front(source)
    for trial in front:
        study.enqueue_trial(
            space.params_of(trial_settings(trial)),
            user_attrs={"warm_start": f"{source.study_name}#{trial.number}"},
            skip_if_exists=True,
        )
    if config is not None and cost_of is not None:
        transfer_leakage(study, source, config, cost_of)
    return len(front)


def transfer_leakage(
    study: optuna.Study, source: optuna.Study, config: StudyConfig, cost_of: Callable[[TrialSettings], float]
) -> int:
    """Tell ``study``'s sampler which shakings ``source`` (same model, leakage figure and space) found
    over this study's leakage cap by more than ``TRANSFER_MARGIN``: each is added as a screened trial
    (stopped before tuning, accuracy 0, the leakage measured there, marked ``transferred_from``), so the
    search avoids that region without attacking it again. Such a trial is never in a front, holds no
    figure of this study's own, and a trial budget does not count it. Returns how many were added."""
    try:
        theirs = study_config(source)
    except StudyError:
        return 0
    cap = config.caps.max_leakage
    same = (theirs.model, theirs.leakage_measure, theirs.leakage_objective, theirs.space) == (
        config.model,
        config.leakage_measure,
        config.leakage_objective,
        config.space,
    )
    if cap is None or not same:
        return 0
    seen = {t.user_attrs.get(screening.SHAKING_ATTR) for t in study.get_trials(deepcopy=False)}
    added = 0
    for trial in source.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if trial.values is None or "settings" not in trial.user_attrs:
            continue
        leakage = trial.values[2]
        settings = trial_settings(trial)
        shaking = shaking_key(settings)
        if leakage <= cap + TRANSFER_MARGIN or shaking in seen or trial.user_attrs.get("transferred_from"):
            continue
        seen.add(shaking)
        cost = cost_of(settings)
        study.add_trial(
            optuna.trial.create_trial(
                params=trial.params,
                distributions=trial.distributions,
                values=[0.0, cost, leakage],
                constraints=config.caps.violations(0.0, cost, leakage),
                user_attrs={
                    "settings": settings.to_dict(),
                    screening.SHAKING_ATTR: shaking,
                    SCREENED_ATTR: f"leakage over the cap in study {source.study_name}",
                    "transferred_from": f"{source.study_name}#{trial.number}",
                    "stopped_early": True,
                    "leakage_measure": config.leakage_measure,
                    "leakage_objective": config.leakage_objective,
                },
            )
        )
        added += 1
    return added
