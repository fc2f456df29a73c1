"""CLI commands of the service: serve, targets, reoptimise, schedule add|list|remove, run-job (internal)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer

from adaptive.cli import options
from adaptive.cli.common import JsonOption, emit, handle_errors, progress_bar, stderr, warn
from adaptive.cli.search import StorageOption
from adaptive.runs import execute_run, queue_run, raise_on_sigterm
from adaptive.scheduler import add_schedule, list_schedules, make_scheduler, remove_schedule
from adaptive.selection import Candidate, accuracy_gap, attacks_explained
from objectives.device import resolve_device
from operators.errors import SettingsError
from storage.engine import storage_url
from storage.repository import RECORDED_FIELDS, Repository, SelectionRecord

TOKEN_ENV = "SHAKETUNE_API_TOKEN"
DATA_ROOTS_ENV = "SHAKETUNE_DATA_ROOTS"

schedule_app = typer.Typer(help="Re-optimisation schedules (kept in the database; the service runs them).")


def serve(
    storage: str | None = StorageOption,
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Interface to bind; see docs/service.md before exposing it."
    ),
    port: int = typer.Option(8600, "--port", min=1, max=65535),
    token_file: Path | None = typer.Option(
        None, "--token-file", help=f"Require this bearer token (else ${TOKEN_ENV}, if set)."
    ),
    data_roots: list[Path] = typer.Option(
        [],
        "--data-root",
        help=f"A directory targets may read data files and models from (repeatable; default "
        f"${DATA_ROOTS_ENV}, else the working directory). Nothing outside them is read.",
    ),
) -> None:
    """Run the HTTP service (OpenAPI at /docs) with its scheduler, until interrupted."""
    import uvicorn

    from adaptive.service.app import ServiceSettings, create_app

    url = storage_url(storage)
    settings = ServiceSettings(url, read_token(token_file), resolve_data_roots(data_roots))
    Repository(url)  # an unreachable database is a clear error here, not a server traceback
    if host not in ("127.0.0.1", "localhost", "::1") and not settings.token:
        warn(
            f"binding {host} without a token: anyone who reaches it can use the API; "
            "give --token-file or put it behind a reverse proxy that authenticates"
        )
    roots = ", ".join(map(str, settings.data_roots))
    stderr.print(f"targets may read data and models under: {roots}", highlight=False, markup=False)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


def resolve_data_roots(given: list[Path]) -> tuple[Path, ...]:
    """The data roots as absolute, resolved directories: the options, else $SHAKETUNE_DATA_ROOTS
    (separated by ':'), else the working directory; each must exist."""
    if not given:
        given = [Path(p) for p in os.environ.get(DATA_ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    roots = []
    for root in given or [Path.cwd()]:
        resolved = root.expanduser().resolve()
        if not resolved.is_dir():
            raise SettingsError(f"data root {root} is not a directory")
        roots.append(resolved)
    return tuple(roots)


def read_token(path: Path | None) -> str | None:
    """The API token from a file (refused if others can read it) or the environment."""
    if path is None:
        token = os.environ.get(TOKEN_ENV, "").strip()
        if not token:
            return None
    else:
        if not path.is_file():
            raise SettingsError(f"token file not found: {path}")
        if path.stat().st_mode & 0o077:
            raise SettingsError(
                f"token file {path} is readable by others; restrict it with: chmod 600 {path}"
            )
        token = path.read_text().strip()
    if len(token) < 16:
        raise SettingsError("the API token must be at least 16 characters")
    return token


def run_job(
    run_id: int = typer.Argument(..., help="Run id (from the runs table)."),
    storage: str | None = StorageOption,
    device: str = options.Device,
) -> None:
    """Execute one queued run (the service starts this in a worker process; it inherits the service's
    environment, so SHAKETUNE_DEVICE set for the service chooses its workers' device)."""
    raise_on_sigterm()
    run = execute_run(run_id, storage_url(storage), device=device)
    typer.echo(f"run {run.id} ({run.study_name}): {run.state}: {run.message}")
    if run.state != "succeeded":
        sys.exit(1)


def reoptimise(
    target: str = typer.Argument(..., help="Target name."),
    storage: str | None = StorageOption,
    trials: int | None = typer.Option(None, "--trials", min=1, help="Default: the target's trials per run."),
    device: str = options.Device,
    as_json: bool = JsonOption,
) -> None:
    """Re-optimise a target now, in this process: a new study warm-started from its previous one."""
    resolve_device(device)  # a device this machine lacks: refused before a run is queued
    url = storage_url(storage)
    repository = Repository(url)
    run = queue_run(repository, target, "reoptimise", trials)
    with progress_bar() as bar:
        task = bar.add_task(f"{run.study_name}", total=None)

        def stage(name: str, done: int, total: int) -> None:
            bar.update(task, description=f"{run.study_name}: {name} {done}/{total}")

        run = execute_run(run.id, url, stage, device)
    current = repository.current_selection(target)
    emit(
        {
            "target": target,
            "study": run.study_name,
            "state": run.state,
            "decision": run.message,
            "warm_start_from": run.warm_start_from,
            "selection": _selection_summary(current),
        },
        as_json,
        [f"{run.study_name}: {run.state}; {run.message}"],
    )


def _selection_summary(record: SelectionRecord | None) -> dict[str, Any] | None:
    """Where a target's current settings came from, their objectives and the settings themselves."""
    if record is None:
        return None
    return {
        "study": record.study_name,
        "trial": record.trial_number,
        "accuracy": record.accuracy,
        "leakage": record.leakage,
        **{name: getattr(record, name) for name in RECORDED_FIELDS},
        "accuracy_gap": accuracy_gap(record),
        "leakage_summary": Candidate.of_record(record).describe_leakage(),
        "attacks_explained": attacks_explained(record),
        "cost_gflops": record.cost_gflops,
        "settings": record.settings,
    }


def targets(storage: str | None = StorageOption, as_json: bool = JsonOption) -> None:
    """List targets with their current selection."""
    repository = Repository(storage_url(storage))
    rows = []
    for target in repository.targets():
        current = repository.current_selection(target.name)
        rows.append(
            {
                "target": target.name,
                "model": target.model,
                "policy": target.policy,
                "caps": target.caps,
                "last_study": target.last_study,
                "selection": _selection_summary(current),
            }
        )
    lines = [
        f"{r['target']}: model {r['model']}, policy {r['policy']}, "
        + (
            f"selected trial {r['selection']['trial']} of {r['selection']['study']}"
            if r["selection"]
            else "nothing selected"
        )
        for r in rows
    ] or ["no targets"]
    emit({"targets": rows}, as_json, lines)


@schedule_app.command("add")
@handle_errors
def schedule_add(
    target: str = typer.Option(..., "--target", help="Target to re-optimise."),
    cron: str | None = typer.Option(None, "--cron", help="Five-field crontab, UTC, e.g. '0 3 * * 1'."),
    every: float | None = typer.Option(None, "--every", help="Alternatively: every this many seconds."),
    storage: str | None = StorageOption,
    as_json: bool = JsonOption,
) -> None:
    """Add a re-optimisation schedule for a target."""
    url = storage_url(storage)
    scheduler = make_scheduler(url, running=False)
    try:
        made = add_schedule(scheduler, url, target, cron, every)
    finally:
        scheduler.shutdown(wait=False)
    next_run = made.next_run_time.isoformat() if made.next_run_time else None
    emit(
        {"id": made.id, "target": made.target, "trigger": made.trigger, "next_run_time": next_run},
        as_json,
        [f"added {made.id}: {made.trigger}, next run {next_run}"],
    )


@schedule_app.command("list")
@handle_errors
def schedule_list(storage: str | None = StorageOption, as_json: bool = JsonOption) -> None:
    """List schedules."""
    scheduler = make_scheduler(storage_url(storage), running=False)
    try:
        found = list_schedules(scheduler)
    finally:
        scheduler.shutdown(wait=False)
    rows = [
        {
            "id": s.id,
            "target": s.target,
            "trigger": s.trigger,
            "next_run_time": s.next_run_time.isoformat() if s.next_run_time else None,
        }
        for s in found
    ]
    emit(
        {"schedules": rows},
        as_json,
        [
            f"{r['id']}: {r['target']} {r['trigger']}, next run {r['next_run_time'] or 'none (paused)'}"
            for r in rows
        ]
        or ["no schedules"],
    )


@schedule_app.command("remove")
@handle_errors
def schedule_remove(
    schedule_id: str = typer.Argument(..., help="Schedule id (from 'schedule list')."),
    storage: str | None = StorageOption,
    as_json: bool = JsonOption,
) -> None:
    """Remove a schedule."""
    scheduler = make_scheduler(storage_url(storage), running=False)
    try:
        remove_schedule(scheduler, schedule_id)
    finally:
        scheduler.shutdown(wait=False)
    emit({"removed": schedule_id}, as_json, [f"removed {schedule_id}"])


def register(app: typer.Typer) -> None:
    for command in (serve, reoptimise, targets):
        app.command(command.__name__)(handle_errors(command))
    app.command("run-job", hidden=True)(handle_errors(run_job))
    app.add_typer(schedule_app, name="schedule")
