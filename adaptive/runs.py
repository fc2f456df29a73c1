"""Runs: one optimisation of a target in a worker process, and the selection decision that ends it.

A run is queued in the database, executed by ``shaketune run-job ID`` (a separate process, so a request
never waits for a study and a crash takes only that run down), warm-started from the target's previous
study, and it ends by applying the target's policy: the new front's pick replaces the current selection
only when it is better, and every decision is recorded with its reason. The database holds at most one
active run per target. A worker marks its run alive (a heartbeat with its host and PID); a run whose
worker died (killed, crashed, its machine gone) is found by the service, while it runs and when it
starts, and launched again: it resumes its study, so finished trials are never repeated, and the trial
the dead worker was measuring is failed and retried.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from adaptive.budget import heartbeat_seconds, run_budget, storage_options
from adaptive.inputs import check_access
from adaptive.samplers import DEFAULT_SAMPLER, SAMPLERS
from adaptive.screening import DEFAULT_STRATEGY, PLAIN, check_strategy
from adaptive.selection import NONE_FEASIBLE, POLICIES, Candidate, cap_note, decide, why_nothing_is_feasible
from adaptive.space import SearchSpace
from adaptive.study import (
    Caps,
    StoredReferences,
    StudyConfig,
    cost_in_gflops,
    feasible_front,
    load_study,
    objective,
    open_study,
    runner_for,
    study_exists,
)
from adaptive.transfer import warm_start
from objectives.data import check_file
from objectives.device import resolve_device
from objectives.leakage import (
    ALL,
    DEFAULT_LEAKAGE_MEASURE,
    DEFAULT_LEAKAGE_OBJECTIVE,
    check_measure,
    check_objective,
)
from objectives.task import TaskSpec
from objectives.trial import PRIVATE, Fidelity, check_accuracy_of
from operators.errors import SettingsError, ShaketuneError
from storage.engine import ENV_VAR as STORAGE_ENV
from storage.engine import optuna_storage
from storage.models import utcnow
from storage.repository import (
    ACTIVE_STATES,
    ActiveRunExists,
    Repository,
    RunRecord,
    TargetRecord,
)

HOST = socket.gethostname()
LOG_DIR_ENV = "SHAKETUNE_LOG_DIR"
MAX_ATTEMPTS = 3  # launches of a run after its first worker died
log = logging.getLogger("shaketune.runs")


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
    leakage_measure: str = DEFAULT_LEAKAGE_MEASURE  # older templates: the bound, the safe default
    strategy: str = DEFAULT_STRATEGY  # how trials spend tuning (adaptive/screening.py)
    leakage_objective: str = DEFAULT_LEAKAGE_OBJECTIVE  # which occurrences leakage scores
    accuracy_of: str = PRIVATE  # which accuracy the search maximises

    def __post_init__(self) -> None:
        check_measure(self.leakage_measure)
        check_objective(self.leakage_objective)
        check_accuracy_of(self.accuracy_of)
        check_strategy(self.strategy)
        if self.trials < 1:
            raise SettingsError(f"trials must be >= 1, got {self.trials}")
        if self.sampler not in SAMPLERS:
            raise SettingsError(f"unknown sampler {self.sampler!r}; choose from {', '.join(SAMPLERS)}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fidelity": self.fidelity.to_dict(), "space": self.space.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> SearchTemplate:
        data = dict(data or {})
        data.setdefault("strategy", PLAIN)  # what targets registered before screening searched with
        data.setdefault("leakage_objective", ALL)  # what they scored before the sensitive figures
        fidelity = Fidelity(**data.pop("fidelity", {}))
        space = SearchSpace.from_dict(data.pop("space", {}))
        return cls(fidelity=fidelity, space=space, **data)

    @classmethod
    def of(cls, config: StudyConfig, trials: int, sampler: str) -> SearchTemplate:
        return cls(
            trials,
            sampler,
            config.seed,
            config.fidelity,
            config.space,
            config.leakage_measure,
            config.strategy,
            config.leakage_objective,
            config.accuracy_of,
        )


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
        leakage_measure=template.leakage_measure,
        strategy=template.strategy,
        leakage_objective=template.leakage_objective,
        accuracy_of=template.accuracy_of,
    )


def register_target(
    repository: Repository,
    name: str,
    model: str,
    task: TaskSpec,
    caps: Caps,
    policy: str,
    template: SearchTemplate,
    data_roots: Sequence[Path] | None = None,
) -> TargetRecord:
    """Create a target (or confirm an identical one exists) with its caps, policy and search template;
    ``data_roots``: the directories the registering service may read, which its workers check again."""
    if policy not in POLICIES:
        raise SettingsError(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")
    existing = repository.get_target(name)
    fingerprint = task.fingerprint()
    if existing is not None and (existing.model != model or existing.task_fingerprint != fingerprint):
        before, now = _described(existing.task), task.describe_fully()
        same = " (described alike: a source's content has changed since)" if before == now else ""
        raise SettingsError(
            f"target {name!r} exists for model {existing.model!r} and task {before}; this request names "
            f"model {model!r} and task {now}{same}; use another target name for another model or task"
        )
    record = repository.ensure_target(
        name, model, task.to_dict(), fingerprint, caps.to_dict(), policy, template.to_dict()
    )
    changes: dict[str, Any] = {}
    if existing is not None:  # same model and task: the new caps, policy and template
        changes = {"caps": caps.to_dict(), "policy": policy, "search": template.to_dict()}
    if data_roots is not None:
        changes["data_roots"] = [str(root) for root in data_roots]
    return repository.update_target(name, **changes) if changes else record


def check_registered_inputs(target: TargetRecord, config: StudyConfig) -> None:
    """In a worker, before anything is read: a target the service registered still reads only inside its
    data roots (a file swapped for a link elsewhere is refused) and its sources are what was registered
    (same fingerprint)."""
    if target.data_roots is None:
        return
    task = config.task
    check_access(task, config.model, [Path(root) for root in target.data_roots])
    for source in (task.train, task.eval, task.public):
        if not source.is_hub:
            check_file(source.location)  # gone, a directory, a device: said as at registration
    if task.fingerprint() != target.task_fingerprint:
        raise SettingsError(
            "a data source of this target changed since it was registered (its content, or what its path "
            "points to); register the target again to use the data as it is now"
        )


def _described(task: dict[str, Any]) -> str:
    """A stored task in full (sources, columns, header line); its stored line if this version cannot
    read it."""
    try:
        return TaskSpec.from_dict(task).describe_fully()
    except ShaketuneError:
        return str(task.get("describe", "?"))


# --- queueing and launching ------------------------------------------------------------------------
def queue_run(
    repository: Repository, target: str, kind: str, trials: int | None = None, warm: bool = True
) -> RunRecord:
    """A new queued run for ``target``; the database refuses it while the target has another active
    run (whoever asks: the API, a schedule or the CLI)."""
    record = repository.get_target(target)
    if record is None:
        raise NotFound(f"no target named {target!r}")
    template = SearchTemplate.from_dict(record.search)
    source = (record.last_study or _latest_study_on(repository, record.model)) if warm else None
    try:
        return repository.create_run(target, kind, trials or template.trials, source, template.seed)
    except ActiveRunExists as exc:
        raise RunConflict(str(exc)) from None


def _latest_study_on(repository: Repository, model: str) -> str | None:
    """The last study of another target on the same model: a new target starts from what it learnt about
    leakage (which depends on the model and the shaking, not on the task's labels)."""
    studies = [t.last_study for t in repository.targets() if t.model == model and t.last_study]
    return studies[-1] if studies else None


_children: dict[int, subprocess.Popen] = {}
_children_lock = threading.Lock()


def log_dir() -> Path:
    path = Path(os.environ.get(LOG_DIR_ENV, "shaketune-logs"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def launch(run_id: int, url: str) -> subprocess.Popen:
    """Start ``shaketune run-job`` for a run in its own process (its output goes to a log file).

    The storage URL goes through the environment, never the command line: a URL may hold a password,
    and every local user can read any process's command line.
    """
    log = (log_dir() / f"run-{run_id}.log").open("ab")
    command = [sys.executable, "-m", "adaptive", "run-job", str(run_id)]
    env = {**os.environ, STORAGE_ENV: url}
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
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


def _starting(run_id: int) -> bool:
    """Whether this process launched ``run_id``'s worker and it has not exited yet."""
    with _children_lock:
        process = _children.get(run_id)
    return process is not None and process.poll() is None


def process_alive(pid: int | None) -> bool:
    """Whether process ``pid`` exists on this machine and has not finished (a zombie has)."""
    if not pid:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def run_heartbeat_seconds() -> float:
    """How often a worker marks its run alive."""
    return min(heartbeat_seconds(), 15)


def run_grace_seconds() -> float:
    """How old a run's last heartbeat may be before its worker counts as dead: four beats, and at
    least a minute, so a worker slowed by a busy machine or a locked database is not taken for dead
    (a worker process that is gone on this machine is noticed at once, whatever its heartbeat)."""
    return max(4 * run_heartbeat_seconds(), 60.0)


def worker_alive(run: RunRecord, now: datetime | None = None) -> bool:
    """Whether ``run`` has a live worker: its heartbeat is recent (set when it was queued, then by its
    worker) and, on this machine, its process still exists, so a killed worker is noticed at once."""
    if run.state == "queued" and _starting(run.id):
        return True
    now = now or utcnow()
    grace = timedelta(seconds=run_grace_seconds())
    fresh = run.heartbeat_at is not None and now - run.heartbeat_at < grace
    if run.host == HOST and run.pid:
        return fresh and process_alive(run.pid)
    return fresh


def fail_running_trials(url: str, study_name: str) -> list[int]:
    """Mark a dead run's RUNNING trials failed (only its worker ran them) and re-enqueue their
    settings through the storage's retry callback, as Optuna's ``fail_stale_trials`` does."""
    storage = optuna_storage(url, **storage_options())
    if not study_exists(study_name, storage):
        return []
    study = optuna.load_study(study_name=study_name, storage=storage)
    failed = []
    callback = storage.get_heartbeat_stale_trial_callback()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
            failed.append(trial.number)
            if callback is not None:
                callback(study, storage.get_trial(trial._trial_id))
    return failed


def supervise_runs(
    repository: Repository, url: str, launcher: Callable[[int, str], Any] = launch
) -> list[int]:
    """Find active runs whose worker died (killed, crashed, its machine gone) and deal with them: a
    cancelling run becomes cancelled; any other is launched again (its study resumes, its stale trial
    is failed and re-enqueued) up to MAX_ATTEMPTS times, then failed. Returns the relaunched run ids.

    The service calls this when it starts and every few seconds while it runs.
    """
    relaunched = []
    for run in repository.runs(states=ACTIVE_STATES):
        if worker_alive(run):
            continue
        owner = (run.host, run.pid)
        if run.state == "cancelling" or run.attempts >= MAX_ATTEMPTS:
            final = "cancelled" if run.state == "cancelling" else "failed"
            message = (
                "cancelled (its worker had died)"
                if final == "cancelled"
                else f"its worker died {run.attempts + 1} times; giving up"
            )
            done = repository.update_run(
                run.id, expected=(run.state,), owner=owner, state=final, finished_at=utcnow(), message=message
            )
            if done is not None:
                fail_running_trials(url, run.study_name)
                log.warning("run %s: %s", run.id, message)
            continue
        requeued = repository.update_run(
            run.id,
            expected=(run.state,),
            owner=owner,
            state="queued",
            host=None,
            pid=None,
            heartbeat_at=utcnow(),
            attempts=run.attempts + 1,
            message=f"worker {run.host}:{run.pid} died; launched again",
        )
        if requeued is None:  # changed meanwhile (claimed, cancelled): look again next time
            continue
        failed = fail_running_trials(url, run.study_name)
        launcher(run.id, url)
        relaunched.append(run.id)
        log.warning("run %s: worker died; relaunched (stale trials failed and retried: %s)", run.id, failed)
    return relaunched


def cancel_run(repository: Repository, study_name: str) -> RunRecord:
    """Cancel a queued run at once; ask a running one to stop (SIGTERM to its worker); a run whose
    worker is dead is cancelled at once."""
    run = repository.run_for_study(study_name)
    if run is None:
        raise NotFound(f"no run with study {study_name!r}")
    if run.state == "queued" and not _starting(run.id):
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
    if run.state not in ACTIVE_STATES:
        raise RunConflict(f"run {run.id} of study {study_name!r} is already {run.state}")
    run = repository.update_run(run.id, expected=ACTIVE_STATES, state="cancelling") or run
    if run.state == "cancelling" and not worker_alive(run):
        done = repository.update_run(
            run.id,
            expected=("cancelling",),
            owner=(run.host, run.pid),
            state="cancelled",
            finished_at=utcnow(),
            message="cancelled (its worker had died)",
        )
        if done is not None:
            fail_running_trials(repository_url(repository), run.study_name)
            return done
    if run.host == HOST and worker_alive(run):
        os.kill(run.pid, signal.SIGTERM)
    return run


def repository_url(repository: Repository) -> str:
    return repository.engine.url.render_as_string(hide_password=False)


# --- executing (in the worker) ---------------------------------------------------------------------
def _current_candidate(repository: Repository, target: str) -> Candidate | None:
    record = repository.current_selection(target)
    return Candidate.of_record(record) if record is not None else None


def decide_selection(repository: Repository, target: TargetRecord, study: optuna.Study, caps: Caps) -> str:
    """Apply the target's policy to the study's feasible front and record the decision."""
    front = [Candidate.of(study.study_name, t) for t in feasible_front(study, caps)]
    current = _current_candidate(repository, target.name)
    if not front:
        why = why_nothing_is_feasible(study, caps)
        reason = f"no setting of {study.study_name} is feasible within the target's caps: {why.reason}"
        if current is not None:
            reason += "; the current setting stays"
            record = current.record(target.name, target.policy, caps.to_dict(), reason, "kept")
        elif why.closest is not None:
            reason += "; nothing is selected (recorded: the candidate with the lowest leakage, refused)"
            closest = Candidate.of(study.study_name, why.closest)
            record = closest.record(target.name, target.policy, caps.to_dict(), reason, NONE_FEASIBLE)
        else:
            return reason
        repository.record_selection(record)
        return reason
    replace, choice = decide(current, front, target.policy)
    decision = "selected" if replace else "kept"
    reason = choice.reason + cap_note(caps)
    record = choice.candidate.record(target.name, target.policy, caps.to_dict(), reason, decision)
    repository.record_selection(record)
    return reason


class Heartbeat:
    """A worker's thread that marks its run alive every few seconds; if the run is no longer this
    worker's (the service gave it to another after missing beats), ``lost`` is set and the worker stops."""

    def __init__(self, repository: Repository, run_id: int) -> None:
        self.repository, self.run_id = repository, run_id
        self.owner = (HOST, os.getpid())
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"run-{run_id}-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(run_heartbeat_seconds()):
            try:
                mine = self.repository.update_run(
                    self.run_id, expected=ACTIVE_STATES, owner=self.owner, heartbeat_at=utcnow()
                )
            except Exception:  # the database is briefly unreachable: try again next beat
                log.warning("run %s: heartbeat not recorded", self.run_id, exc_info=True)
                continue
            if mine is None:
                self.lost.set()
                return

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()


def execute_run(
    run_id: int,
    url: str,
    progress: Callable[[str, int, int], None] | None = None,
    device: str = "cpu",
) -> RunRecord:
    """Run (or resume) a run's study to its trial budget on ``device`` (a --device spec, resolved in the
    worker so that a device it lacks fails the run with the reason), then decide the selection."""
    repository = Repository(url)
    run = repository.get_run(run_id)
    if run is None:
        raise NotFound(f"no run {run_id}")
    claimed = repository.update_run(
        run_id,
        expected=("queued",),
        state="running",
        host=HOST,
        pid=os.getpid(),
        heartbeat_at=utcnow(),
        started_at=run.started_at or utcnow(),
    )
    if claimed is None:
        current = repository.update_run(
            run_id, expected=("cancelling",), state="cancelled", finished_at=utcnow(), message="cancelled"
        )
        return current or repository.get_run(run_id)
    with Heartbeat(repository, run_id) as heartbeat:
        return _execute(repository, claimed, url, heartbeat, progress, device)


def _execute(
    repository: Repository,
    run: RunRecord,
    url: str,
    heartbeat: Heartbeat,
    progress: Callable[[str, int, int], None] | None,
    device: str = "cpu",
) -> RunRecord:
    run_id, owner = run.id, heartbeat.owner
    try:
        where = resolve_device(device)
        target = repository.get_target(run.target)
        config = config_for(target)
        check_registered_inputs(target, config)
        template = SearchTemplate.from_dict(target.search)
        storage = optuna_storage(url, **storage_options())
        study = open_study(run.study_name, storage, config, template.sampler, run.sampler_seed)
        runner = runner_for(config, StoredReferences(repository), where)
        if run.warm_start_from and not study.get_trials(deepcopy=False):
            source = load_study(run.warm_start_from, storage)
            warm_start(study, source, config.space, config, cost_in_gflops(runner, config))

        def cancelled() -> bool:
            return heartbeat.lost.is_set() or repository.get_run(run_id).state == "cancelling"

        def watched(stage: str, done: int, total: int) -> None:
            """Progress, and the point where a worker whose run is no longer its own (ended or handed to
            another while this process was frozen) stops, at its next step rather than its next trial."""
            if heartbeat.lost.is_set():
                raise RunCancelled
            if progress is not None:
                progress(stage, done, total)

        run_budget(study, objective(config, runner, watched), run.trials, repository, should_stop=cancelled)
        if heartbeat.lost.is_set():
            return repository.get_run(run_id)  # another worker has the run now
        if cancelled():
            raise RunCancelled
        message = decide_selection(repository, target, study, config.caps)
        repository.update_target(target.name, last_study=run.study_name)
        return finish_run(repository, run_id, owner, "succeeded", message) or repository.get_run(run_id)
    except RunCancelled:
        return finish_run(repository, run_id, owner, "cancelled", "cancelled") or repository.get_run(run_id)
    except Exception as exc:
        message = f"{type(exc).__name__}: {str(exc)[:500]}"
        if finish_run(repository, run_id, owner, "failed", message) is None:
            # ended or taken over while this worker was stopped: the run keeps its state
            current = repository.get_run(run_id)
            log.warning(
                "run %s is %s and no longer this worker's: %s dropped", run_id, current.state, message
            )
            return current
        raise


def finish_run(
    repository: Repository, run_id: int, owner: tuple[str, int], state: str, message: str
) -> RunRecord | None:
    """A worker's final write: only while the run is still active and still this worker's, so a worker
    resumed after the service ended or re-launched its run (a frozen process) never overwrites a terminal
    state; the run as written, or None when the write did not apply."""
    return repository.update_run(
        run_id, expected=ACTIVE_STATES, owner=owner, state=state, finished_at=utcnow(), message=message
    )


def raise_on_sigterm() -> None:
    """In a worker: turn SIGTERM into :class:`RunCancelled` (the trial in progress is marked failed)."""

    def handler(_signum: int, _frame: Any) -> None:
        raise RunCancelled

    signal.signal(signal.SIGTERM, handler)
