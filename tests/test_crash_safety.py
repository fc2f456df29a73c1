"""Crashes in the middle of a write leave the previous state: database writes are transactions, files
appear whole or not at all."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from adaptive.scheduler import add_schedule, list_schedules, make_scheduler
from operators.atomic import write_file_atomic
from storage.repository import Repository, SelectionRecord


def selection(trial: int) -> SelectionRecord:
    return SelectionRecord("t", "s", trial, "max-accuracy", {}, {"coverage": 1.0}, 0.8, 10.0, 0.3)


def kill_mid_transaction(url: str, statements: str) -> None:
    """Run ``statements`` inside an open transaction in another process, then SIGKILL it."""
    code = textwrap.dedent(f"""
        from storage.engine import get_engine
        engine = get_engine({url!r})
        connection = engine.connect()
        transaction = connection.begin()
        {statements}
        print("written, not committed", flush=True)
        import time; time.sleep(120)
    """)
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "written, not committed"
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.fixture()
def repository(tmp_path):
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    repo = Repository(url)
    repo.ensure_target("t", "m", {}, "0" * 64)
    repo.record_selection(selection(1))
    return url, repo


def test_a_killed_selection_write_leaves_the_history_intact(repository):
    url, repo = repository
    kill_mid_transaction(
        url,
        'connection.exec_driver_sql("INSERT INTO shaketune_selections (target_id, study_name, '
        "trial_number, policy, caps, settings, accuracy, cost_gflops, leakage, decision, reason, created_at) "
        "VALUES (1, 'x', 99, 'p', '{}', '{}', 1, 1, 0, 'selected', 'crash', '2026-01-01')\")",
    )
    assert [s.trial_number for s in repo.selections("t")] == [1]
    assert repo.current_selection("t").trial_number == 1
    repo.record_selection(selection(2))  # the database is not left locked
    assert repo.current_selection("t").trial_number == 2


def test_a_failed_selection_write_is_rolled_back(repository, monkeypatch):
    url, repo = repository
    from sqlalchemy.orm import Session

    original = Session.flush

    def flush_then_fail(self, *args, **kwargs):
        original(self, *args, **kwargs)
        raise RuntimeError("disk gone")

    monkeypatch.setattr(Session, "flush", flush_then_fail)
    with pytest.raises(RuntimeError):
        repo.record_selection(selection(7))
    monkeypatch.undo()
    assert [s.trial_number for s in repo.selections("t")] == [1]


def test_a_killed_schedule_write_leaves_the_schedules_intact(repository):
    url, _ = repository
    scheduler = make_scheduler(url, running=False)
    try:
        kept = add_schedule(scheduler, url, "t", "0 3 * * 1", None)
    finally:
        scheduler.shutdown(wait=False)
    kill_mid_transaction(
        url,
        'connection.exec_driver_sql("INSERT INTO shaketune_schedules (id, next_run_time, job_state) VALUES '
        "('half-written', 1, x'00')\")",
    )
    scheduler = make_scheduler(url, running=False)
    try:
        assert [s.id for s in list_schedules(scheduler)] == [kept.id]
    finally:
        scheduler.shutdown(wait=False)


def test_file_writes_are_all_or_nothing(tmp_path, monkeypatch):
    target = tmp_path / "settings.json"
    write_file_atomic(target, b'{"coverage": 1.0}')

    def fail(_fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError):
        write_file_atomic(target, b'{"coverage": 0.5, "vertical": []}')
    assert target.read_bytes() == b'{"coverage": 1.0}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.json"]  # no temporary file left
