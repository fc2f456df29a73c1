"""One database URL for everything: the project's own tables and Optuna's studies.

SQLite (a file in the working directory) is the default; it runs in WAL mode with a busy timeout so
several worker processes on one machine can share the file. PostgreSQL URLs serve many machines.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from operators.errors import ShaketuneError

DEFAULT_URL = "sqlite:///shaketune.db"
ENV_VAR = "SHAKETUNE_STORAGE"
SQLITE_BUSY_SECONDS = 60
# PostgreSQL ends a session left idle inside a transaction this long, releasing its locks: a client
# frozen mid-transaction (stopped, its machine suspended or cut off) cannot block the others for good.
POSTGRES_IDLE_TRANSACTION_SECONDS = 60


class StorageError(ShaketuneError):
    """The database URL is malformed or the database cannot be reached."""


def storage_url(url: str | None = None) -> str:
    """The URL to use: the argument, else $SHAKETUNE_STORAGE, else a SQLite file here; validated."""
    chosen = url or os.environ.get(ENV_VAR) or DEFAULT_URL
    try:
        parsed = make_url(chosen)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise StorageError(
            f"malformed storage URL {redacted(chosen)!r} (is the port a number?); expected e.g. "
            "sqlite:///shaketune.db or postgresql+psycopg://user@host:5432/db"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not Path(database).resolve().parent.is_dir():
            raise StorageError(f"directory of SQLite file {database!r} does not exist")
    return chosen


def redacted(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return url.split("@")[-1] if "@" in url else url


def _is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def engine_kwargs(url: str) -> dict[str, Any]:
    """Engine options for ``url``: SQLite waits for locks instead of failing at once; PostgreSQL drops a
    session idle in a transaction after a minute (its client is frozen) and checks pooled connections."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": SQLITE_BUSY_SECONDS}}
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("psycopg", "psycopg2"):
        idle = f"-c idle_in_transaction_session_timeout={POSTGRES_IDLE_TRANSACTION_SECONDS * 1000}"
        options = " ".join(filter(None, [parsed.query.get("options"), idle]))  # keeps the URL's own
        return {"pool_pre_ping": True, "connect_args": {"options": options}}
    return {"pool_pre_ping": True}


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_SECONDS * 1000}")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


@functools.lru_cache(maxsize=8)
def get_engine(url: str | None = None) -> Engine:
    """The engine for ``url`` (one per process and URL); SQLite files are switched to WAL mode."""
    url = storage_url(url)
    try:
        engine = sqlalchemy.create_engine(url, **engine_kwargs(url))
    except (NoSuchModuleError, ArgumentError, ImportError) as exc:
        raise StorageError(f"cannot use storage URL {redacted(url)!r}: {exc}") from None
    if _is_sqlite(url):
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        with engine.connect() as connection:
            if _is_sqlite(url):
                connection.exec_driver_sql("PRAGMA journal_mode = WAL")  # persistent in the file
    except OperationalError as exc:
        raise StorageError(f"cannot open storage {redacted(url)!r}: {exc.orig}") from None
    return engine


def optuna_storage(url: str | None = None, **options: Any) -> Any:
    """Optuna's RDB storage on the same database (``options`` go to RDBStorage, e.g. heartbeats)."""
    import optuna

    url = storage_url(url)
    get_engine(url)  # validates the URL and puts SQLite in WAL mode before Optuna connects
    try:
        with warnings.catch_warnings():  # heartbeat options are marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url), **options)
    except (OperationalError, ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise StorageError(f"cannot open Optuna storage at {redacted(url)!r}: {exc}") from None
