"""Many workers, one study: a shared budget completed exactly, on PostgreSQL and on SQLite; a worker
killed with SIGKILL mid-trial loses nothing; a killed service resumes its studies."""

import json
import signal

import pytest
from optuna.trial import TrialState
from sqlalchemy import text
from sqlalchemy.engine import make_url

from storage.engine import get_engine, redacted
from storage.repository import Repository
from tests.cli import run
from tests.service import Service, tiny_target
from tests.waiting import wait_process
from tests.workers import create_study, postgres_database, start_worker, states, trials, wait_until


@pytest.fixture()
def postgres(postgres_admin):
    """A new database; its URL carries a password (the admin URL's, else one that trust authentication
    ignores) so that the tests can check that no output shows it."""
    with postgres_database(postgres_admin) as url:
        parsed = make_url(url)
        yield parsed.set(password=parsed.password or "pw-not-shown").render_as_string(hide_password=False)


def finish(*workers, timeout=240):
    for worker in workers:
        assert wait_process(worker, timeout) == 0


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_two_workers_share_one_budget(backend, request, tmp_path, sst2):
    storage = (
        request.getfixturevalue("postgres") if backend == "postgres" else f"sqlite:///{tmp_path / 'w.db'}"
    )
    made = create_study(storage, "shared", sst2)
    assert made["storage"] == redacted(storage)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    finish(*(start_worker(storage, "shared", 4, log) for log in logs))
    reports = [json.loads(log.read_text().strip().splitlines()[-1]) for log in logs]
    assert states(storage, "shared")["COMPLETE"] == 4  # the budget, not 4 per worker
    assert sum(r["completed_by_this_worker"] for r in reports) == 4
    assert all("locked" not in log.read_text() for log in logs)
    assert len(Repository(storage).slots("shared")) == 4
    password = make_url(storage).password
    if password:  # PostgreSQL: printed, logged and stored (schedules) only with the password hidden
        assert "***" in made["storage"] and password not in json.dumps(made)
        assert all(password not in log.read_text() for log in logs)
        run("schedule", "add", "--target", "shared", "--every", "3600", "--storage", storage)
        with get_engine(storage).connect() as connection:
            jobs = connection.execute(text("SELECT job_state FROM shaketune_schedules")).scalars().all()
        assert len(jobs) == 1 and password.encode() not in jobs[0]


def test_worker_killed_mid_trial_loses_nothing(postgres, tmp_path, sst2):
    create_study(postgres, "crashy", sst2)
    victim = start_worker(postgres, "crashy", 3, tmp_path / "victim.log")
    wait_until(  # a trial with all its settings drawn (tuning.mode is drawn last), now being measured
        lambda: [
            t
            for t in trials(postgres, "crashy")
            if t.state == TrialState.RUNNING and "tuning.mode" in t.params
        ],
        message="a running trial",
    )
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    running = [t for t in trials(postgres, "crashy") if t.state == TrialState.RUNNING]  # orphaned by the kill
    assert len(running) == 1
    survivor = start_worker(postgres, "crashy", 3, tmp_path / "survivor.log")
    finish(survivor)
    found = trials(postgres, "crashy")
    by_number = {t.number: t for t in found}
    killed = by_number[running[0].number]
    assert killed.state == TrialState.FAIL  # marked failed by the survivor (heartbeat went stale)
    retried = [t for t in found if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert retried[0].params == killed.params  # the same settings, measured again
    assert sum(t.state == TrialState.COMPLETE for t in found) == 3


def test_killed_service_resumes_its_study(tmp_path, sst2, monkeypatch):
    monkeypatch.setenv("SHAKETUNE_HEARTBEAT_SECONDS", "1")
    storage = f"sqlite:///{tmp_path / 'svc.db'}"
    service = Service(storage, tmp_path)
    assert service.client.post("/targets", json=tiny_target("resilient", sst2, trials=3)).status_code == 201
    study = service.client.post("/studies", json={"target": "resilient"}).json()["study"]
    wait_until(lambda: service.client.get(f"/studies/{study}").json()["trials_done"] >= 1, message="a trial")
    worker_pid = Repository(storage).run_for_study(study).pid
    service.stop(signal.SIGKILL)
    import os

    os.kill(worker_pid, signal.SIGKILL)  # the machine went down: service and worker at once
    restarted = Service(storage, tmp_path)
    try:
        done = restarted.wait_for(study)
        assert done["state"] == "succeeded" and done["trials_done"] == 3, done
        assert Repository(storage).run_for_study(study).pid != worker_pid
        assert restarted.client.get("/targets/resilient/selection").status_code == 200
    finally:
        restarted.stop()
