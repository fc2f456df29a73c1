"""A study's trial budget shared by any number of workers on any number of machines.

Each worker loops: mark trials of dead workers failed (Optuna heartbeats; the storage's retry callback
enqueues them again), release the budget slots of failed trials, stop when the study has completed its
budget, otherwise claim a free slot and run one trial in it. Slots live in the database, so the study
completes exactly its budget however many workers race for it, and nothing a killed worker had finished
is lost or repeated.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import optuna
from optuna.trial import TrialState

from adaptive.screening import SCREEN_LIMIT
from adaptive.trials import count_tuned, tuned
from operators.errors import ShaketuneError
from storage.repository import Repository

HEARTBEAT_ENV = "SHAKETUNE_HEARTBEAT_SECONDS"
DEFAULT_HEARTBEAT = 30
POLL_SECONDS = 1.0


class TrialsKeepFailing(ShaketuneError):
    """A worker's trials fail one after another (a bug or bad data, not a crash): it stops."""


def heartbeat_seconds() -> int:
    """How often a running trial tells the database it is alive; 3x this without news means dead."""
    return max(1, int(os.environ.get(HEARTBEAT_ENV, DEFAULT_HEARTBEAT)))


def storage_options() -> dict[str, Any]:
    """RDBStorage options: heartbeats, and a failed (stale) trial is retried up to twice."""
    beat = heartbeat_seconds()
    with warnings.catch_warnings():  # heartbeats and their retry callback are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2)
    return {"heartbeat_interval": beat, "grace_period": 3 * beat, "heartbeat_stale_trial_callback": retry}


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def screened_out(study: optuna.Study) -> int:
    """Candidates this study stopped before tuning (by a cap or by dominance; not those transferred)."""
    return sum(
        not tuned(t) and not t.user_attrs.get("transferred_from")
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    )


def _tidy_slots(study: optuna.Study, repository: Repository, budget: int) -> None:
    """Release slots whose trial failed, was screened out or never started; give tuned trials without one
    a slot."""
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    stale_pending = datetime.now(timezone.utc) - timedelta(seconds=6 * heartbeat_seconds())
    held = set()
    for slot, number, _worker, claimed_at in repository.slots(study.study_name):
        trial = trials.get(number) if number is not None else None
        failed = trial is not None and trial.state == TrialState.FAIL
        screened = trial is not None and trial.state == TrialState.COMPLETE and not tuned(trial)
        abandoned = number is None and claimed_at < stale_pending
        if failed or screened or abandoned:
            repository.release_slot(study.study_name, slot)
        elif number is not None:
            held.add(number)
    counted = {n for n, t in trials.items() if tuned(t)}
    for number in counted - held:  # e.g. completed by ``optimize`` before workers joined
        repository.claim_slot(study.study_name, budget, "adopted", trial_number=number)


def stop_after_tuned(study: optuna.Study, trials: int) -> Callable[[optuna.Study, Any], None]:
    """An ``optimize`` callback that stops ``study`` once it has tuned ``trials`` more trials than now, or
    screened ``SCREEN_LIMIT`` x ``trials`` more candidates out."""
    tuned_before, screened_before = count_tuned(study), screened_out(study)

    def callback(study: optuna.Study, _trial: Any) -> None:
        tuned_now = count_tuned(study) - tuned_before
        if tuned_now >= trials or screened_out(study) - screened_before >= SCREEN_LIMIT * trials:
            study.stop()

    return callback


def run_budget(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], Sequence[float]],
    budget: int,
    repository: Repository,
    deadline: datetime | None = None,
    callbacks: Sequence[Callable[[optuna.Study, Any], None]] = (),
    should_stop: Callable[[], bool] = lambda: False,
    max_failures: int = 3,
) -> int:
    """Run trials until ``study`` has ``budget`` tuned ones, ``deadline`` passes or ``should_stop()``;
    returns how many this worker tuned. Screened candidates (stopped before tuning) free their slot and
    do not count; after ``SCREEN_LIMIT`` x ``budget`` of them the run stops (the caps exclude nearly
    everything the sampler proposes)."""
    me, mine, failures = worker_name(), 0, 0
    reasons: list[str] = []
    while (deadline is None or datetime.now(timezone.utc) < deadline) and not should_stop():
        with warnings.catch_warnings():  # marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        _tidy_slots(study, repository, budget)
        if count_tuned(study) >= budget or screened_out(study) >= SCREEN_LIMIT * budget:
            break
        slot = repository.claim_slot(study.study_name, budget, me)
        if slot is None:  # every slot is held by a running trial; one may still fail and free its slot
            time.sleep(POLL_SECONDS)
            continue
        numbers: list[int] = []

        def in_slot(trial: optuna.Trial, slot: int = slot, numbers: list[int] = numbers) -> Sequence[float]:
            numbers.append(trial.number)
            repository.assign_slot(study.study_name, slot, trial.number)
            try:
                return objective(trial)
            except Exception as exc:  # Optuna keeps no reason: remember the first one to report it
                reasons.append(f"trial {trial.number}: {type(exc).__name__}: {str(exc)[:400]}")
                raise

        study.optimize(
            in_slot, n_trials=1, catch=(Exception,), callbacks=list(callbacks), gc_after_trial=True
        )
        if not numbers:  # the trial never began
            repository.release_slot(study.study_name, slot)
            continue
        trial = next(t for t in study.get_trials(deepcopy=False) if t.number == numbers[0])
        if trial.state == TrialState.COMPLETE:
            failures = 0
            if tuned(trial):
                mine += 1
            else:
                repository.release_slot(study.study_name, slot)
            continue
        repository.release_slot(study.study_name, slot)
        failures += 1
        if failures >= max_failures:
            first = reasons[-failures] if len(reasons) >= failures else "no reason recorded"
            raise TrialsKeepFailing(
                f"{failures} trials in a row failed in study {study.study_name}; the first: {first}"
            )
    return mine
