"""The database: one URL, SQLite in WAL mode by default, the project's tables beside Optuna's."""

import sqlite3

import pytest

from storage.engine import StorageError, get_engine, optuna_storage, storage_url
from storage.repository import Repository, SelectionRecord


def test_default_url_env_and_validation(monkeypatch, tmp_path):
    monkeypatch.delenv("SHAKETUNE_STORAGE", raising=False)
    assert storage_url() == "sqlite:///shaketune.db"
    monkeypatch.setenv("SHAKETUNE_STORAGE", f"sqlite:///{tmp_path}/env.db")
    assert storage_url() == f"sqlite:///{tmp_path}/env.db"
    assert storage_url("sqlite:///x.db") == "sqlite:///x.db"  # the argument wins
    with pytest.raises(StorageError, match="malformed storage URL"):
        storage_url("no url at all")
    with pytest.raises(StorageError, match="cannot use storage URL"):
        get_engine("nosuchdb://host/db")


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path):
    url = f"sqlite:///{tmp_path}/wal.db"
    optuna_storage(url)
    assert sqlite3.connect(tmp_path / "wal.db").execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with get_engine(url).connect() as connection:
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 30_000


def test_project_tables_live_beside_optunas(tmp_path):
    url = f"sqlite:///{tmp_path}/both.db"
    optuna_storage(url)
    repository = Repository(url)
    tables = {
        row[0] for row in sqlite3.connect(tmp_path / "both.db").execute("SELECT name FROM sqlite_master")
    }
    assert {"studies", "trials", "shaketune_targets", "shaketune_selections"} <= tables
    repository.ensure_target("t", "model-a", {"describe": "task"}, "f" * 64)
    with pytest.raises(StorageError, match="exists for model 'model-a'"):
        repository.ensure_target("t", "model-b", {"describe": "task"}, "f" * 64)


def test_selection_history_is_kept(tmp_path):
    repository = Repository(f"sqlite:///{tmp_path}/history.db")
    repository.ensure_target("t", "m", {}, "0" * 64)

    def selection(trial, decision="selected"):
        return SelectionRecord(
            "t", "s", trial, "max-accuracy", {}, {"coverage": 1.0}, 0.8, 10.0, 0.3, decision, "why"
        )

    repository.record_selection(selection(1))
    repository.record_selection(selection(2))
    repository.record_selection(selection(3, decision="kept"))
    assert [s.trial_number for s in repository.selections("t")] == [1, 2, 3]
    assert repository.current_selection("t").trial_number == 2
    with pytest.raises(StorageError, match="no target named 'other'"):
        repository.record_selection(SelectionRecord("other", "s", 1, "p", {}, {}, 0, 0, 0))
