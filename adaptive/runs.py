"""Runs: one optimisation of a target in a worker process, and the selection decision that ends it.

A run is queued in the database, executed by ``shaketune run-job ID`` (a separate process, so a request
never waits for a study and a crash takes only that run down), warm-started from the target's previous
study, and it ends by applying the target's policy: the new front's pick replaces the current selection
only when it is better, and every decision is recorded with its reason. A run whose process died (the
service or the machine was killed) is found by the service at start-up and launched again; it resumes its
study, so finished trials are never repeated.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna

from adaptive.budget import run_budget, storage_options
from adaptive.samplers import DEFAULT_SAMPLER, SAMPLERS
from adaptive.selection import POLICIES, Candidate, decide
from adaptive.space import SearchSpace
from adaptive.study import (
    Caps,
    StoredReferences,
    StudyConfig,
    feasible_front,
    load_study,
    objective,
    open_study,
    runner_for,
    warm_start,
)
from objectives.task import TaskSpec
from objectives.trial import Fidelity, TrialSettings
from operators.errors import SettingsError, ShaketuneError
from storage.engine import ENV_VAR as STORAGE_ENV
from storage.engine import optuna_storage
from storage.models import utcnow
from storage.repository import ACTIVE_STATES, Repository, RunRecord, SelectionRecord, TargetRecord

HOST = socket.gethostname()
LOG_DIR_ENV = "SHAKETUNE_LOG_DIR"


class RunConflict(ShaketuneError):
    """The target already has an active run, or the run is in a state that forbids the request."""


class NotFound(ShaketuneError):
    """No such target, run or study."""


class RunCancelled(Exception):
    """Raised in a worker when its run is cancelled (SIGTERM)."""


@dataclass(frozen=True)
class SearchTemplate:
    """How a target is (re-)optimised: trials per run, sampler, seed, fidelity and search space."""

    trials: int = 20
    sampler: str = DEFAULT_SAMPLER
    seed: int = 0
    fidelity: Fidelity = field(default_factory=Fidelity)
    space: SearchSpace = field(default_factory=SearchSpace)

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise SettingsError(f"trials must be >= 1, got {self.trials}")
        if self.sampler not in SAMPLERS:
            raise SettingsError(f"unknown sampler {self.sampler!r}; choose from {', '.join(SAMPLERS)}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fidelity": self.fidelity.to_dict(), "space": self.space.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> SearchTemplate:
        data = dict(data or {})
        fidelity = Fidelity(**data.pop("fidelity", {}))
        space = SearchSpace.from_dict(data.pop("space", {}))
        return cls(fidelity=fidelity, space=space, **data)

    @classmethod
    def of(cls, config: StudyConfig, trials: int, sampler: str) -> SearchTemplate:
        return cls(trials, sampler, config.seed, config.fidelity, config.space)


def config_for(target: TargetRecord) -> StudyConfig:
    """The study config a run of ``target`` uses: its model, task, caps and search template."""
    template = SearchTemplate.from_dict(target.search)
    return StudyConfig(
        model=target.model,
        task=TaskSpec.from_dict(target.task),
        fidelity=template.fidelity,
        space=template.space,
        caps=Caps.from_dict(target.caps),
        target=target.name,
        seed=template.seed,
    )


def register_target(
    repository: Repository,
    name: str,
    model: str,
    task: TaskSpec,
    caps: Caps,
    policy: str,
    template: SearchTemplate,
) -> TargetRecord:
    """Create a target (or confirm an identical one exists) with its caps, policy and search template."""
    if policy not in POLICIES:
        raise SettingsError(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")
    existing = repository.get_target(name)
    record = repository.ensure_target(
        name, model, task.to_dict(), task.fingerprint(), caps.to_dict(), policy, template.to_dict()
    )
    if existing is not None:  # same model and task: take the new caps, policy and template
        record = repository.update_target(name, caps=caps.to_dict(), policy=policy, search=template.to_dict())
    return record


# --- queueing and launching ------------------------------------------------------------------------
def queue_run(
    repository: Repository, target: str, kind: str, trials: int | None = None, warm: bool = True
) -> RunRecord:
    """A new queued run for ``target``; refused while the target has another active run."""
    record = repository.get_target(target)
    if record is None:
        raise NotFound(f"no target named {target!r}")
    active = repository.runs(target, ACTIVE_STATES)
    if active:
        raise RunConflict(
            f"target {target!r} already has run {active[0].id} ({active[0].state}); wait or cancel it"
        )
    template = SearchTemplate.from_dict(record.search)
    previous = len(repository.runs(target))
    return repository.create_run(
        target,
        kind,
        trials or template.trials,
        record.last_study if warm else None,
        template.seed + 7919 * (previous + 1),  # each run explores anew; measurements stay comparable
    )


_children: dict[int, subprocess.Popen] = {}
_children_lock = threading.Lock()


def log_dir() -> Path:
    path = Path(os.environ.get(LOG_DIR_ENV, "shaketune-logs"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def launch(run_id: int, url: str) -> subprocess.Popen:
    """Start ``shaketune run-job`` for a run in its own process (its output goes to a log file).

    The storage URL goes in the child's environment, not its arguments: any user can read a process's
    arguments (ps, /proc/PID/cmdline), only its owner its environment, and the URL may hold a password.
    """
    log = (log_dir() / f"run-{run_id}.log").open("ab")
    command = [sys.executable, "-m", "adaptive", "run-job", str(run_id)]
    process = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, STORAGE_ENV: url},
    )
    log.close()
    with _children_lock:
        _children[run_id] = process
    return process


def reap_children() -> None:
    """Collect finished worker processes (no zombies)."""
    with _children_lock:
        for run_id, process in list(_children.items()):
            if process.poll() is not None:
                del _children[run_id]


def process_alive(pid: int | None) -> bool:
    """Whether ``pid`` is a live shaketune worker on this machine."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return b"run-job" in cmdline and state != "Z"  # a zombie has finished


def resume_interrupted(repository: Repository, url: str) -> list[int]:
    """Relaunch this machine's active runs whose worker is gone; returns their ids."""
    relaunched = []
    for run in repository.runs(states=ACTIVE_STATES):
        if run.host not in (None, HOST) or process_alive(run.pid):
            continue
        if run.state == "cancelling":
            repository.update_run(run.id, state="cancelled", finished_at=utcnow(), message="cancelled")
            continue
        launch(run.id, url)
        relaunched.append(run.id)
    return relaunched


def cancel_run(repository: Repository, study_name: str) -> RunRecord:
    """Cancel a queued run at once; ask a running one to stop (SIGTERM to its worker)."""
    run = repository.run_for_study(study_name)
    if run is None:
        raise NotFound(f"no run with study {study_name!r}")
    if run.state == "queued":
        updated = repository.update_run(
            run.id,
            expected=("queued",),
            state="cancelled",
            finished_at=utcnow(),
            message="cancelled before start",
        )
        if updated is not None:
            return updated
        run = repository.get_run(run.id)
    if run.state not in ("running", "cancelling", "queued"):
        raise RunConflict(f"run {run.id} of study {study_name!r} is already {run.state}")
    run = repository.update_run(run.id, state="cancelling") or run
    if run.host == HOST and process_alive(run.pid):
        os.kill(run.pid, signal.SIGTERM)
    return run


# --- executing (in the worker) ---------------------------------------------------------------------
def _current_candidate(repository: Repository, target: str) -> Candidate | None:
    record = repository.current_selection(target)
    if record is None:
        return None
    settings = TrialSettings.from_dict(record.settings)
    return Candidate(
        record.study_name, record.trial_number, settings, record.accuracy, record.cost_gflops, record.leakage
    )


def decide_selection(repository: Repository, target: TargetRecord, study: optuna.Study, caps: Caps) -> str:
    """Apply the target's policy to the study's feasible front and record the decision."""
    front = [Candidate.of(study.study_name, t) for t in feasible_front(study, caps)]
    current = _current_candidate(repository, target.name)
    if not front:
        return f"no setting of {study.study_name} is feasible within the target's caps; nothing changes"
    replace, choice = decide(current, front, target.policy)
    chosen = choice.candidate
    repository.record_selection(
        SelectionRecord(
            target=target.name,
            study_name=chosen.study_name,
            trial_number=chosen.trial_number,
            policy=target.policy,
            caps=caps.to_dict(),
            settings=chosen.settings.to_dict(),
            accuracy=chosen.accuracy,
            cost_gflops=chosen.cost_gflops,
            leakage=chosen.leakage,
            decision="selected" if replace else "kept",
            reason=choice.reason,
        )
    )
    return choice.reason


def execute_run(run_id: int, url: str, progress: Callable[[str, int, int], None] | None = None) -> RunRecord:
    """Run (or resume) a run's study to its trial budget, then decide the selection."""
    repository = Repository(url)
    run = repository.get_run(run_id)
    if run is None:
        raise NotFound(f"no run {run_id}")
    claimed = repository.update_run(
        run_id,
        expected=("queued", "running"),
        state="running",
        host=HOST,
        pid=os.getpid(),
        started_at=run.started_at or utcnow(),
    )
    if claimed is None:
        return (
            repository.update_run(run_id, expected=("cancelling",), state="cancelled", finished_at=utcnow())
            or run
        )
    try:
        target = repository.get_target(run.target)
        config = config_for(target)
        template = SearchTemplate.from_dict(target.search)
        storage = optuna_storage(url, **storage_options())
        study = open_study(run.study_name, storage, config, template.sampler, run.sampler_seed)
        if run.warm_start_from and not study.get_trials(deepcopy=False):
            warm_start(study, load_study(run.warm_start_from, storage), config.space)

        def cancelled() -> bool:
            return repository.get_run(run_id).state == "cancelling"

        runner = runner_for(config, StoredReferences(repository))
        run_budget(study, objective(config, runner, progress), run.trials, repository, should_stop=cancelled)
        if cancelled():
            raise RunCancelled
        message = decide_selection(repository, target, study, config.caps)
        repository.update_target(target.name, last_study=run.study_name)
        return repository.update_run(run_id, state="succeeded", finished_at=utcnow(), message=message)
    except RunCancelled:
        return repository.update_run(run_id, state="cancelled", finished_at=utcnow(), message="cancelled")
    except Exception as exc:
        message = f"{type(exc).__name__}: {str(exc)[:500]}"
        repository.update_run(run_id, state="failed", finished_at=utcnow(), message=message)
        raise


def raise_on_sigterm() -> None:
    """In a worker: turn SIGTERM into :class:`RunCancelled` (the trial in progress is marked failed)."""

    def handler(_signum: int, _frame: Any) -> None:
        raise RunCancelled

    signal.signal(signal.SIGTERM, handler)
