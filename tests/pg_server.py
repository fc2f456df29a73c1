"""The PostgreSQL server of the scale-out tests: the one at the admin URL when it answers, else a
throwaway cluster of our own (initdb and pg_ctl in a temporary directory, trust authentication on
127.0.0.1 and a free port) that lives as long as the test session.

pytest-postgresql was considered: it runs initdb and pg_ctl as the invoking user in directories only
that user can enter, and initdb refuses to run as root, so on a root-run machine (CI, containers) it
cannot start a server; this module runs the cluster as the unprivileged ``postgres`` user there.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

ENV_VAR = "SHAKETUNE_TEST_PG"
DEFAULT_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
RUN_AS = "postgres"  # the user Debian's package creates; initdb and postgres refuse root
TIMEOUT = 120


class Unavailable(Exception):
    """No server answers and none can be started here (the message says why)."""


def libpq_url(url: str) -> str:
    """``url`` as libpq (psycopg) reads it: SQLAlchemy's ``postgresql+psycopg://`` becomes ``postgresql://``."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def shown(url: str) -> str:
    """``url`` fit to print: the password hidden."""
    return make_url(url).render_as_string(hide_password=True)


def connect_error(url: str) -> str | None:
    """None when the server at ``url`` accepts us, else why not (psycopg's messages name no password)."""
    import psycopg

    try:
        with psycopg.connect(libpq_url(url), connect_timeout=5) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        text = str(exc).strip()  # "connection failed: connection to server at ... failed: WHY"
        return text.splitlines()[0].rsplit("failed: ", 1)[-1] if text else exc.__class__.__name__
    return None


def listening(url: str) -> bool:
    """Whether anything accepts TCP connections at the URL's host and port."""
    parsed = make_url(url)
    try:
        with socket.create_connection((parsed.host or "127.0.0.1", parsed.port or 5432), timeout=3):
            return True
    except OSError:
        return False


def find_bindir() -> Path | None:
    """A directory holding both initdb and pg_ctl: on PATH, from pg_config, or Debian's
    /usr/lib/postgresql/VERSION/bin (newest first), which is not on PATH."""
    candidates = []
    if found := shutil.which("pg_ctl"):
        candidates.append(Path(found).resolve().parent)
    if pg_config := shutil.which("pg_config"):
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    candidates.append(Path("/usr/local/pgsql/bin"))
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class ThrowawayServer:
    """A PostgreSQL cluster in a temporary directory; ``stop()`` shuts it down and deletes it."""

    bindir: Path
    base: Path
    port: int
    user: str | None  # the account it runs as when we are root, else None (ourselves)

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def data(self) -> Path:
        return self.base / "data"

    def describe(self) -> str:
        runs_as = f", as user {self.user}" if self.user else ""
        return f"throwaway PostgreSQL on 127.0.0.1:{self.port} ({self.bindir}{runs_as}, in {self.base})"

    def _run(self, *args: str) -> None:
        identity = {}
        if self.user is not None:
            account = pwd.getpwnam(self.user)
            identity = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        env = {**os.environ, "LC_ALL": "C", "LANG": "C", "HOME": str(self.base)}
        env.pop("PGDATA", None)
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=TIMEOUT, cwd=self.base, env=env, **identity
        )
        if done.returncode != 0:
            log = self.base / "server.log"
            tail = log.read_text(errors="replace")[-1500:] if log.is_file() else ""
            raise RuntimeError(
                f"{Path(args[0]).name} {args[1] if len(args) > 1 else ''} failed ({done.returncode}): "
                f"{(done.stdout + done.stderr).strip()[-1500:]}\n{tail}"
            )

    @classmethod
    def start(cls) -> ThrowawayServer:
        """initdb and pg_ctl start; ``Unavailable`` if this machine has no PostgreSQL programs or, as
        root, no unprivileged account to run them as."""
        bindir = find_bindir()
        if bindir is None:
            raise Unavailable(
                "no PostgreSQL programs (initdb, pg_ctl) here; install Debian's postgresql package "
                f"(as root: make postgres) or point ${ENV_VAR} at a server"
            )
        user = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(RUN_AS)
            except KeyError:
                raise Unavailable(
                    f"running as root and there is no {RUN_AS!r} user to run initdb as (PostgreSQL refuses "
                    f"root); install Debian's postgresql package (make postgres) or point ${ENV_VAR} at a "
                    "server"
                ) from None
            user = RUN_AS
        base = Path(tempfile.mkdtemp(prefix="shaketune-pg-"))
        if user is not None:
            account = pwd.getpwnam(user)
            os.chown(base, account.pw_uid, account.pw_gid)
        server = cls(bindir, base, free_port(), user)
        try:
            server._run(
                str(bindir / "initdb"),
                "-D",
                str(server.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            )
            for attempt in range(3):  # another process may take the free port before the server binds it
                try:
                    server._start_server()
                    break
                except RuntimeError:
                    if attempt == 2:
                        raise
                    server.port = free_port()
        except BaseException:
            server.stop()
            raise
        return server

    def _start_server(self) -> None:
        options = (
            f"-p {self.port} -k {shlex.quote(str(self.base))} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        log = str(self.base / "server.log")
        pg_ctl = str(self.bindir / "pg_ctl")
        self._run(pg_ctl, "start", "-D", str(self.data), "-l", log, "-w", "-t", str(TIMEOUT), "-o", options)

    def stop(self) -> None:
        """Stop the server (disconnecting every client) and delete its directory."""
        try:
            if (self.data / "postmaster.pid").is_file():
                self._run(str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data), "-m", "fast", "-w")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


@dataclass
class Server:
    """The admin URL the tests use, and what it is (for the session's summary line)."""

    admin_url: str
    note: str
    throwaway: ThrowawayServer | None = None


def server_for_tests() -> Server:
    """The server at $SHAKETUNE_TEST_PG (or the default URL) when it answers; else a throwaway one.

    A server that is given explicitly, listens, and still refuses us is a configuration error, not a
    reason to test elsewhere: that raises RuntimeError. ``Unavailable`` means none can be had here.
    """
    given = os.environ.get(ENV_VAR)
    admin = given or DEFAULT_ADMIN
    error = connect_error(admin)
    if error is None:
        return Server(admin, f"PostgreSQL at {shown(admin)}")
    if given and listening(admin):
        raise RuntimeError(f"${ENV_VAR} ({shown(admin)}) listens but refuses the tests: {error}")
    why = f"no server answers at {shown(admin)} ({error})"
    try:
        throwaway = ThrowawayServer.start()
    except Unavailable as exc:
        raise Unavailable(f"{exc}; {why}") from None
    return Server(throwaway.admin_url, f"{throwaway.describe()}, because {why}", throwaway)
