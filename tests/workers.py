"""Helpers for scale-out tests: a throw-away PostgreSQL database, tiny studies, worker processes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
from optuna.trial import TrialState

from storage.engine import optuna_storage
from tests.cli import run, tiny_search
from tests.pg_server import libpq_url
from tests.waiting import Patience


@contextlib.contextmanager
def postgres_database(admin: str) -> Iterator[str]:
    """A new, empty database for one test on the server at ``admin`` (the ``postgres_admin`` fixture),
    dropped afterwards; yields its SQLAlchemy URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"shaketune_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(libpq_url(admin), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin).set(drivername="postgresql+psycopg", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        from storage.engine import get_engine

        get_engine.cache_clear()  # engines of this process pointed at the database being dropped
        with psycopg.connect(libpq_url(admin), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_study(storage: str, study: str, sst2: Path, *extra: str) -> dict:
    """``optimize --trials 0``: a study at the smallest fidelity, ready for workers."""
    return run(
        "optimize", "--study", study, "--storage", storage, "--trials", "0", *tiny_search(sst2), *extra
    )


def start_worker(storage: str, study: str, budget: int, log: Path, heartbeat: int = 1) -> subprocess.Popen:
    """``shaketune worker`` in its own process (one torch thread: two of them share the 2 cores)."""
    env = {**os.environ, "SHAKETUNE_HEARTBEAT_SECONDS": str(heartbeat), "HF_HUB_OFFLINE": "1"}
    command = [
        sys.executable,
        "-m",
        "adaptive",
        "worker",
        "--study",
        study,
        "--storage",
        storage,
        "--trials",
        str(budget),
        "--threads",
        "1",
        "--json",
    ]
    return subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)


def trials(storage: str, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=optuna_storage(storage)).get_trials(deepcopy=False)


def wait_until(condition, timeout: float = 120, every: float = 0.3, message: str = "condition"):
    patience = Patience(timeout)
    while not patience.exhausted:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"{message} not met within {timeout} s (scaled by load)")


def states(storage: str, study: str) -> dict[str, int]:
    found = trials(storage, study)
    return {state.name: sum(t.state == state for t in found) for state in TrialState}
