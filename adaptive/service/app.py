"""The HTTP service: targets, their selected settings, studies run by background workers, schedules.

Errors are JSON ``{"message": ...}`` with a 4xx status for anything the client can fix and a plain 500
otherwise; no stack trace is ever sent. No key exists in the service, so none can be served.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import optuna
from fastapi import FastAPI, Query, Request, status
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException
from starlette.routing import Match

from adaptive.inputs import check_inputs
from adaptive.runs import (
    NotFound,
    RunConflict,
    SearchTemplate,
    cancel_run,
    launch,
    queue_run,
    reap_children,
    register_target,
    supervise_runs,
)
from adaptive.scheduler import add_schedule, list_schedules, make_scheduler, remove_schedule, stop_scheduler
from adaptive.selection import NONE_FEASIBLE, Candidate, accuracy_gap, attacks_explained
from adaptive.service import schemas
from adaptive.space import SearchSpace
from adaptive.study import Caps, feasible_front, leakage_figures, study_exists
from adaptive.trials import count_tuned, objectives_of
from objectives.task import TaskSpec
from objectives.trial import Fidelity
from operators.errors import ShaketuneError
from storage.engine import optuna_storage, redacted, storage_url
from storage.repository import (
    ACTIVE_STATES,
    RECORDED_FIELDS,
    ActiveRunExists,
    Repository,
    RunRecord,
    TargetRecord,
)

MAX_BODY_BYTES = 64 * 1024
SUPERVISE_SECONDS = 2.0
PUBLIC_PATHS = ("/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")  # no token needed
DOCS_ASSETS = "/static-offline-docs/"  # Swagger UI's files, served from the installed package
log = logging.getLogger("shaketune.service")
Name = Annotated[str, PathParam(pattern=schemas.NAME, description="Target name")]
StudyName = Annotated[str, PathParam(pattern=schemas.ID, description="Study name")]
ScheduleId = Annotated[str, PathParam(pattern=schemas.ID, description="Schedule id")]
TargetFilter = Annotated[str | None, Query(pattern=schemas.NAME, description="Only this target's")]


@dataclass(frozen=True)
class ServiceSettings:
    """How the service runs: its database, the optional API token, and the directories that targets
    may read data and models from (nothing outside them is ever opened on a request's behalf)."""

    storage: str
    token: str | None = None
    data_roots: tuple[Path, ...] = ()


class HeadAsGet:
    """HEAD on every GET route: answered as GET without the body (HTTP's meaning of HEAD)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            return await self.app(scope, receive, send)

        async def without_body(message: dict) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)


BODY_NOT_PARSED = "There was an error parsing the body"  # FastAPI's detail when the body cannot be read
# CLI flags that messages of the shared checks name, in the API's words
API_WORDS = (
    ('--no-header, or "header": false', '"header": false'),
    ("--no-header", '"header": false'),
    ("--text-column 0 --label-column 1", '"text_column": 0, "label_column": 1'),
    ("--text-column/--label-column", "text_column/label_column"),
    ("--text-column", "text_column"),
    ("--label-column", "label_column"),
)


def in_api_words(message: str) -> str:
    """A shared check's message with the CLI flags it names put as the API's fields."""
    for flag, field in API_WORDS:
        message = message.replace(flag, field)
    return message


def allowed_methods(app: Any, scope: dict) -> list[str]:
    """Every method some route serves at this scope's path (with HEAD wherever GET is served)."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches({**scope, "type": "http"})
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


class BodyLimit:
    """Refuse request bodies larger than ``limit`` bytes with 413, before the app reads them."""

    def __init__(self, app: Any, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await self._refuse(send)
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Any) -> None:
        payload = json.dumps({"message": f"request body larger than {self.limit} bytes"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": payload})


class BearerToken:
    """Require ``Authorization: Bearer TOKEN`` on every path but /health and the API's documentation
    (constant-time comparison; the scheme name is case-insensitive, as RFC 7235 says)."""

    def __init__(self, app: Any, token: str) -> None:
        self.app, self.expected = app, token.encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in PUBLIC_PATHS or path.startswith(DOCS_ASSETS):
            return await self.app(scope, receive, send)
        scheme, _, given = dict(scope.get("headers", [])).get(b"authorization", b"").strip().partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.expected):
            return await self.app(scope, receive, send)
        payload = json.dumps({"message": "missing or wrong bearer token"}).encode()
        headers = [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def _target_out(record: TargetRecord) -> schemas.TargetOut:
    return schemas.TargetOut(
        name=record.name,
        model=record.model,
        task={k: v for k, v in record.task.items() if k != "describe"},
        caps=record.caps,
        policy=record.policy,
        search=record.search,
        last_study=record.last_study,
        created_at=record.created_at,
    )


def create_app(
    settings: ServiceSettings | str | None = None, launcher: Callable[[int, str], Any] = launch
) -> FastAPI:
    """The service on one database; schedules run and dead workers are noticed while the app runs;
    with a token, every request but /health and the docs must carry it as a bearer token.
    ``launcher(run_id, url)`` starts a run's worker process."""
    if not isinstance(settings, ServiceSettings):
        settings = ServiceSettings(storage_url(settings))
    url, token = settings.storage, settings.token

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        app.state.repository = Repository(url)
        app.state.storage = optuna_storage(url)
        app.state.scheduler = make_scheduler(url, running=True)
        stop = threading.Event()

        def supervise() -> None:  # dead workers: relaunch their runs, or finish cancelling them
            while True:
                reap_children()
                try:
                    supervise_runs(app.state.repository, url, launcher)
                except Exception:
                    log.exception("supervising runs failed; trying again")
                if stop.wait(SUPERVISE_SECONDS):
                    return

        threading.Thread(target=supervise, name="supervisor", daemon=True).start()
        try:
            yield
        finally:
            stop.set()
            stop_scheduler(app.state.scheduler, url)

    app = FastAPIOffline(
        title="shaketune",
        version="0.1.0",
        description="Chooses CypherTalk shaking settings for private fine-tuning; serves them to automated "
        "clients and re-optimises on schedules.",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit)
    app.add_middleware(HeadAsGet)
    if token:
        app.add_middleware(BearerToken, token=token)

    def repository(request: Request) -> Repository:
        return request.app.state.repository

    def target_or_404(request: Request, name: str) -> TargetRecord:
        record = repository(request).get_target(name)
        if record is None:
            raise NotFound(f"no target named {name!r}")
        return record

    def study_out(request: Request, run: RunRecord) -> schemas.StudyOut:
        done = stopped = measured = 0
        best = None
        storage = request.app.state.storage
        if study_exists(run.study_name, storage):
            study = optuna.load_study(study_name=run.study_name, storage=storage)
            done = count_tuned(study)
            found = study.get_trials(deepcopy=False)
            stopped = sum(bool(t.user_attrs.get("stopped_early")) for t in found)
            measured = sum(t.state == optuna.trial.TrialState.COMPLETE for t in found)
            target = repository(request).get_target(run.target)
            front = feasible_front(study, Caps.from_dict(target.caps))
            if front:
                accuracy, cost, leakage = objectives_of(front[0])
                best = schemas.BestPoint(
                    trial=front[0].number,
                    accuracy=accuracy,
                    cost_gflops=cost,
                    leakage=leakage,
                    leakage_summary=leakage_figures(front[0]).describe(),
                )
        return schemas.StudyOut(
            study=run.study_name,
            target=run.target,
            run=run.id,
            kind=run.kind,
            state=run.state,
            message=run.message,
            trials_requested=run.trials,
            trials_done=done,
            trials_measured=measured,
            trials_stopped_early=stopped,
            warm_start_from=run.warm_start_from,
            best_feasible=best,
            created_at=run.created_at,
            started_at=run.started_at,
            finished_at=run.finished_at,
        )

    # --- errors ------------------------------------------------------------------------------------
    @app.exception_handler(NotFound)
    async def not_found(_request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"message": str(exc)}, status_code=404)

    @app.exception_handler(RunConflict)
    @app.exception_handler(ActiveRunExists)
    async def conflict(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"message": str(exc)}, status_code=409)

    @app.exception_handler(ShaketuneError)
    async def bad_input(_request: Request, exc: ShaketuneError) -> JSONResponse:
        return JSONResponse({"message": in_api_words(str(exc))}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for error in exc.errors():
            location = [str(p) for p in error.get("loc", ()) if p != "body"]
            problem = str(error.get("msg", ""))
            if error.get("type") == "json_invalid":  # its location is a character offset, not a field
                offset = location.pop() if location else "?"
                problem = f"malformed JSON at character {offset}: {error.get('ctx', {}).get('error', '')}"
            errors.append({"field": ".".join(location), "problem": problem})
        summary = "; ".join(f"{e['field'] or 'body'}: {e['problem']}" for e in errors)
        return JSONResponse({"message": f"invalid request: {summary}", "detail": errors}, status_code=422)

    @app.exception_handler(HTTPException)  # Starlette's: unknown routes, wrong methods, too
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = {404: "no such path", 405: "method not allowed on this path"}.get(exc.status_code)
        headers = dict(exc.headers or {})
        if exc.status_code == 400 and exc.detail == BODY_NOT_PARSED:  # e.g. JSON nested past the parser
            problem = "the body is not JSON this service can parse (malformed or nested too deeply)"
            detail = [{"field": "", "problem": problem}]
            return JSONResponse({"message": f"invalid request: {problem}", "detail": detail}, status_code=422)
        if exc.status_code == 405:  # every method of every route at this path, not one route's
            allowed = allowed_methods(request.app, request.scope)
            headers["Allow"] = ", ".join(allowed)
            message = f"method not allowed on this path; allowed: {', '.join(allowed)}"
        return JSONResponse(
            {"message": message or str(exc.detail)}, status_code=exc.status_code, headers=headers
        )

    @app.exception_handler(Exception)
    async def internal(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error")
        return JSONResponse({"message": "internal error; see the service log"}, status_code=500)

    errors = {code: {"model": schemas.ErrorOut} for code in (400, 404, 409, 413, 422)}

    # --- routes ------------------------------------------------------------------------------------
    @app.get("/health", response_model=schemas.Health)
    def health(request: Request) -> schemas.Health:
        active = len(repository(request).runs(states=ACTIVE_STATES))
        return schemas.Health(
            status="ok",
            storage=redacted(url),
            scheduler=request.app.state.scheduler.running,
            active_runs=active,
        )

    @app.post("/targets", response_model=schemas.TargetOut, status_code=201, responses=errors)
    def create_target(body: schemas.TargetIn, request: Request) -> schemas.TargetOut:
        """Register a target (model + task data + caps + policy + how to search); idempotent per name.

        Every source and the model are checked now (inside the service's data roots, loadable, with
        the named columns and enough rows, public text disjoint from the private rows): 400 with the
        reason otherwise."""
        task = TaskSpec.from_dict(body.task.model_dump())
        check_inputs(task, body.model, settings.data_roots)
        search = body.search
        space = search.space.model_dump(exclude_none=True)
        template = SearchTemplate(
            search.trials,
            search.sampler,
            search.seed,
            Fidelity(**search.fidelity.model_dump()),
            SearchSpace.from_dict(space),
            search.leakage_measure,
            search.strategy,
            search.leakage_objective,
            search.accuracy_of,
        )
        caps = Caps(**body.caps.model_dump())
        record = register_target(
            repository(request), body.name, body.model, task, caps, body.policy, template, settings.data_roots
        )
        return _target_out(record)

    @app.get("/targets", response_model=list[schemas.TargetOut])
    def targets(request: Request) -> list[schemas.TargetOut]:
        return [_target_out(t) for t in repository(request).targets()]

    @app.get("/targets/{name}", response_model=schemas.TargetOut, responses=errors)
    def target(name: Name, request: Request) -> schemas.TargetOut:
        return _target_out(target_or_404(request, name))

    def selection_out(record: Any) -> schemas.SelectionOut:
        return schemas.SelectionOut(
            target=record.target,
            study=record.study_name,
            trial=record.trial_number,
            policy=record.policy,
            decision=record.decision,
            reason=record.reason,
            accuracy=record.accuracy,
            cost_gflops=record.cost_gflops,
            leakage=record.leakage,
            **{name: getattr(record, name) for name in RECORDED_FIELDS},
            leakage_summary=Candidate.of_record(record).describe_leakage(),
            accuracy_gap=accuracy_gap(record),
            attacks_explained=attacks_explained(record),
            caps=record.caps,
            settings=record.settings,
            created_at=record.created_at,
        )

    @app.get("/targets/{name}/selection", response_model=schemas.SelectionOut, responses=errors)
    def selection(name: Name, request: Request) -> schemas.SelectionOut:
        """The settings this target uses now: what a client asks before each private tuning job."""
        target_or_404(request, name)
        record = repository(request).current_selection(name)
        if record is None:
            history = repository(request).selections(name)
            if history and history[-1].decision == NONE_FEASIBLE:
                raise NotFound(f"target {name!r} has no selected settings: {history[-1].reason}")
            raise NotFound(f"target {name!r} has no selected settings yet: start a study (POST /studies)")
        return selection_out(record)

    @app.get("/targets/{name}/selections", response_model=list[schemas.SelectionOut], responses=errors)
    def selections(name: Name, request: Request) -> list[schemas.SelectionOut]:
        """Every decision about the target's settings, oldest first, each with its reason."""
        target_or_404(request, name)
        return [selection_out(s) for s in repository(request).selections(name)]

    @app.delete("/targets/{name}", status_code=204, responses=errors)
    def delete_target(name: Name, request: Request) -> Response:
        """Remove a target, its schedules and its selection history (409 while it has an active run);
        its studies stay in the database."""
        target_or_404(request, name)
        repository(request).delete_target(name)
        for made in list_schedules(request.app.state.scheduler, name):
            with contextlib.suppress(NotFound):
                remove_schedule(request.app.state.scheduler, made.id)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @app.post(
        "/targets/{name}/reoptimise", response_model=schemas.StudyOut, status_code=202, responses=errors
    )
    def reoptimise(
        name: Name, request: Request, body: schemas.ReoptimiseIn | None = None
    ) -> schemas.StudyOut:
        """Start a re-optimisation now, warm-started from the target's previous study."""
        target_or_404(request, name)
        run = queue_run(repository(request), name, "reoptimise", body.trials if body else None)
        launcher(run.id, url)
        return study_out(request, run)

    @app.post("/studies", response_model=schemas.StudyOut, status_code=202, responses=errors)
    def start_study(body: schemas.StudyIn, request: Request) -> schemas.StudyOut:
        """Start an optimisation for a target in a background worker; poll GET /studies/{study}."""
        target_or_404(request, body.target)
        run = queue_run(repository(request), body.target, "study", body.trials, body.warm_start)
        launcher(run.id, url)
        return study_out(request, run)

    @app.get("/studies", response_model=list[schemas.StudyOut], responses=errors)
    def studies(request: Request, target: TargetFilter = None) -> list[schemas.StudyOut]:
        return [study_out(request, run) for run in repository(request).runs(target)]

    @app.get("/studies/{study}", response_model=schemas.StudyOut, responses=errors)
    def study(study: StudyName, request: Request) -> schemas.StudyOut:
        run = repository(request).run_for_study(study)
        if run is None:
            raise NotFound(f"no study named {study!r} was started by this service")
        return study_out(request, run)

    @app.post("/studies/{study}/cancel", response_model=schemas.StudyOut, status_code=202, responses=errors)
    def cancel(study: StudyName, request: Request) -> schemas.StudyOut:
        return study_out(request, cancel_run(repository(request), study))

    @app.post("/schedules", response_model=schemas.ScheduleOut, status_code=201, responses=errors)
    def create_schedule(body: schemas.ScheduleIn, request: Request) -> schemas.ScheduleOut:
        """Re-optimise a target on a cron expression (UTC) or every N seconds; kept across restarts."""
        made = add_schedule(request.app.state.scheduler, url, body.target, body.cron, body.interval_seconds)
        return schemas.ScheduleOut(**vars(made))

    @app.get("/schedules", response_model=list[schemas.ScheduleOut], responses=errors)
    def schedules(request: Request, target: TargetFilter = None) -> list[schemas.ScheduleOut]:
        return [schemas.ScheduleOut(**vars(s)) for s in list_schedules(request.app.state.scheduler, target)]

    @app.delete("/schedules/{schedule_id}", status_code=204, responses=errors)
    def delete_schedule(schedule_id: ScheduleId, request: Request) -> Response:
        remove_schedule(request.app.state.scheduler, schedule_id)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return app
