"""Reading and writing the project's tables; every write is one transaction (all or nothing)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine, delete, func, inspect, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from storage.engine import StorageError, get_engine
from storage.models import ACTIVE_STATES, Base, PlaintextReference, Run, Selection, Target, TrialSlot, utcnow

# a selection's leakage figures beside the one its study optimised
LEAKAGE_FIELDS = (
    "leakage_measure",
    "leakage_bound",
    "leakage_attacks",
    "strongest_bound_attack",
    "strongest_attack",
    "leakage_objective",
    "leakage_bound_rare",
    "canary_recovery",
    "leakage_attacks_rare",
    "canary_recovery_attacks",
    "strongest_rare_attack",
    "strongest_canary_attack",
    "tokens_unchanged",
    "blind_floor",
)
# what a selection records of its accuracy beside the objective (None: recorded before they were kept)
ACCURACY_FIELDS = (
    "accuracy_of",
    "baseline_accuracy",
    "plaintext_accuracy",
    "private_accuracy",
    "recovered_accuracy",
)
RECORDED_FIELDS = LEAKAGE_FIELDS + ACCURACY_FIELDS
SEED_LIMIT = 2**31  # seeds are stored in 32-bit integer columns
log = logging.getLogger("shaketune.storage")


class ActiveRunExists(StorageError):
    """The target already has a queued, running or cancelling run (the database refused a second)."""


@dataclass(frozen=True)
class TargetRecord:
    name: str
    model: str
    task: dict[str, Any]
    task_fingerprint: str
    caps: dict[str, Any]
    policy: str
    created_at: datetime
    search: dict[str, Any]
    last_study: str | None
    data_roots: list[str] | None = None  # the registering service's data roots (None: not the service)


@dataclass(frozen=True)
class RunRecord:
    id: int
    target: str
    study_name: str
    kind: str
    state: str
    trials: int
    warm_start_from: str | None
    sampler_seed: int
    host: str | None
    pid: int | None
    message: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None = None
    attempts: int = 0


@dataclass(frozen=True)
class SelectionRecord:
    target: str
    study_name: str
    trial_number: int
    policy: str
    caps: dict[str, Any]
    settings: dict[str, Any]
    accuracy: float
    cost_gflops: float
    leakage: float  # the figure the study optimised (``leakage_measure``)
    decision: str = "selected"
    reason: str = ""
    created_at: datetime | None = None
    id: int | None = None
    leakage_measure: str | None = None  # "bound" or "attacks"; None: recorded before the bound existed
    leakage_bound: float | None = None  # informed-adversary bound
    leakage_attacks: float | None = None  # the suite's best attack run (a lower bound)
    strongest_bound_attack: str | None = None
    strongest_attack: str | None = None
    leakage_objective: str | None = None  # "sensitive" or "all"; None: recorded before sensitive figures
    leakage_bound_rare: float | None = None  # the bound on rare tokens
    canary_recovery: float | None = None  # the bound's attacker on planted secrets
    leakage_attacks_rare: float | None = None
    canary_recovery_attacks: float | None = None
    strongest_rare_attack: str | None = None
    strongest_canary_attack: str | None = None
    tokens_unchanged: float | None = None  # share of private tokens uploaded as written
    blind_floor: float | None = None  # always naming the most frequent public token
    accuracy_of: str | None = None  # which accuracy ``accuracy`` is: private or recovered
    baseline_accuracy: float | None = None  # always answering the most common label
    plaintext_accuracy: float | None = None  # plaintext tuning at the same budget
    private_accuracy: float | None = None  # by private inference
    recovered_accuracy: float | None = None  # the owner's recovered model on plaintext


def _utc(moment: datetime | None) -> datetime | None:
    """Datetimes come back naive from SQLite; every one is stored in UTC."""
    return moment.replace(tzinfo=timezone.utc) if moment is not None and moment.tzinfo is None else moment


def _target_record(row: Target) -> TargetRecord:
    return TargetRecord(
        row.name,
        row.model,
        row.task,
        row.task_fingerprint,
        row.caps,
        row.policy,
        _utc(row.created_at),
        row.search or {},
        row.last_study,
        row.data_roots,
    )


def _run_record(row: Run) -> RunRecord:
    return RunRecord(
        row.id,
        row.target.name,
        row.study_name,
        row.kind,
        row.state,
        row.trials,
        row.warm_start_from,
        row.sampler_seed,
        row.host,
        row.pid,
        row.message,
        _utc(row.created_at),
        _utc(row.started_at),
        _utc(row.finished_at),
        _utc(row.heartbeat_at),
        row.attempts or 0,
    )


def add_missing_columns(engine: Engine) -> None:
    """Additive schema upgrade: columns a newer version added appear in an older database (nullable)."""
    inspector = inspect(engine)
    with engine.begin() as connection:
        for table in Base.metadata.sorted_tables:
            if not inspector.has_table(table.name):
                continue
            present = {column["name"] for column in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name not in present:
                    kind = column.type.compile(dialect=engine.dialect)
                    connection.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))
    for table in Base.metadata.sorted_tables:  # indexes added later (create_all makes them only with tables)
        for index in table.indexes:
            try:
                index.create(engine, checkfirst=True)
            except (IntegrityError, OperationalError) as exc:  # rows from before the rule break it
                log.warning("cannot create index %s: %s", index.name, exc.orig)


def _selection_record(row: Selection) -> SelectionRecord:
    return SelectionRecord(
        target=row.target.name,
        study_name=row.study_name,
        trial_number=row.trial_number,
        policy=row.policy,
        caps=row.caps,
        settings=row.settings,
        accuracy=row.accuracy,
        cost_gflops=row.cost_gflops,
        leakage=row.leakage,
        decision=row.decision,
        reason=row.reason,
        created_at=_utc(row.created_at),
        id=row.id,
        **{name: getattr(row, name) for name in RECORDED_FIELDS},
    )


class Repository:
    """The project's tables on one database URL (created on first use)."""

    def __init__(self, url: str | None = None) -> None:
        self.engine = get_engine(url)
        Base.metadata.create_all(self.engine)
        add_missing_columns(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # every statement its own transaction, committed by the database as it runs
        self._autocommit_sessions = sessionmaker(
            self.engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
        )

    def _session(self) -> Session:
        return self._sessions()

    # --- targets -----------------------------------------------------------------------------------
    def ensure_target(
        self,
        name: str,
        model: str,
        task: dict[str, Any],
        task_fingerprint: str,
        caps: dict[str, Any] | None = None,
        policy: str = "max-accuracy",
        search: dict[str, Any] | None = None,
    ) -> TargetRecord:
        """The target ``name``, created if new; refused if it exists for another model or task."""
        existing = self.get_target(name)
        if existing is None:
            try:
                with self._session() as session, session.begin():
                    session.add(
                        Target(
                            name=name,
                            model=model,
                            task=task,
                            task_fingerprint=task_fingerprint,
                            caps=caps or {},
                            policy=policy,
                            search=search or {},
                        )
                    )
            except IntegrityError:  # another process created it meanwhile
                pass
            existing = self.get_target(name)
        if existing.model != model or existing.task_fingerprint != task_fingerprint:
            raise StorageError(
                f"target {name!r} exists for model {existing.model!r} and task "
                f"{existing.task.get('describe')!r}; use another target name for another model or task"
            )
        return existing

    def get_target(self, name: str) -> TargetRecord | None:
        with self._session() as session:
            row = session.scalar(select(Target).where(Target.name == name))
            return _target_record(row) if row else None

    def update_target(self, name: str, **fields: Any) -> TargetRecord:
        """Change a target's caps, policy, search template, last study or data roots."""
        allowed = {"caps", "policy", "search", "last_study", "data_roots"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        with self._session() as session, session.begin():
            row = session.scalar(select(Target).where(Target.name == name))
            if row is None:
                raise StorageError(f"no target named {name!r}")
            for key, value in fields.items():
                setattr(row, key, value)
            return _target_record(row)

    def delete_target(self, name: str) -> None:
        """Remove a target with its selection history and its runs' records (refused while a run is
        active); the Optuna studies stay."""
        with self._session() as session, session.begin():
            row = session.scalar(select(Target).where(Target.name == name).with_for_update())
            if row is None:
                raise StorageError(f"no target named {name!r}")
            active = session.scalar(select(Run).where(Run.target == row, Run.state.in_(ACTIVE_STATES)))
            if active is not None:
                raise ActiveRunExists(
                    f"target {name!r} has run {active.id} ({active.state}); cancel it first"
                )
            session.execute(delete(Selection).where(Selection.target_id == row.id))
            session.execute(delete(Run).where(Run.target_id == row.id))
            session.delete(row)

    def targets(self) -> list[TargetRecord]:
        with self._session() as session:
            return [_target_record(row) for row in session.scalars(select(Target).order_by(Target.id))]

    # --- selections --------------------------------------------------------------------------------
    def record_selection(self, record: SelectionRecord) -> SelectionRecord:
        """Append a decision to the target's history."""
        with self._session() as session, session.begin():
            target = session.scalar(select(Target).where(Target.name == record.target))
            if target is None:
                raise StorageError(f"no target named {record.target!r}")
            row = Selection(
                target=target,
                study_name=record.study_name,
                trial_number=record.trial_number,
                policy=record.policy,
                caps=record.caps,
                settings=record.settings,
                accuracy=record.accuracy,
                cost_gflops=record.cost_gflops,
                leakage=record.leakage,
                decision=record.decision,
                reason=record.reason,
                **{name: getattr(record, name) for name in RECORDED_FIELDS},
            )
            session.add(row)
            session.flush()
            return _selection_record(row)

    def selections(self, target: str) -> list[SelectionRecord]:
        """Every decision about ``target``, oldest first."""
        with self._session() as session:
            rows = session.scalars(
                select(Selection).join(Selection.target).where(Target.name == target).order_by(Selection.id)
            )
            return [_selection_record(row) for row in rows]

    def current_selection(self, target: str) -> SelectionRecord | None:
        """The settings ``target`` uses now: its latest decision of kind 'selected'."""
        chosen = [s for s in self.selections(target) if s.decision == "selected"]
        return chosen[-1] if chosen else None

    # --- runs --------------------------------------------------------------------------------------
    def create_run(
        self, target: str, kind: str, trials: int, warm_start_from: str | None, seed: int
    ) -> RunRecord:
        """A queued run with its own new study, named after the target, the kind and the run id.

        The database refuses a second active run of one target (:class:`ActiveRunExists`), however
        many processes ask at once. The run's sampler seed is ``seed`` offset by the target's runs so
        far, counted in the same transaction, so each run explores anew.
        """
        try:
            with self._session() as session, session.begin():
                owner = session.scalar(select(Target).where(Target.name == target))
                if owner is None:
                    raise StorageError(f"no target named {target!r}")
                previous = session.scalar(select(func.count()).select_from(Run).where(Run.target == owner))
                stamp = utcnow().strftime("%Y%m%d-%H%M%S")
                row = Run(
                    target=owner,
                    study_name=f"pending-{stamp}-{id(owner)}",
                    kind=kind,
                    trials=trials,
                    warm_start_from=warm_start_from,
                    sampler_seed=(seed + 7919 * (previous + 1)) % SEED_LIMIT,
                    heartbeat_at=utcnow(),
                    attempts=0,
                )
                session.add(row)
                session.flush()
                row.study_name = f"{target}-{kind}-{stamp}-{row.id}"
                return _run_record(row)
        except IntegrityError:
            active = self.runs(target, ACTIVE_STATES)
            which = f"run {active[0].id} ({active[0].state})" if active else "an active run"
            raise ActiveRunExists(f"target {target!r} already has {which}; wait or cancel it") from None

    def get_run(self, run_id: int) -> RunRecord | None:
        with self._session() as session:
            row = session.get(Run, run_id)
            return _run_record(row) if row else None

    def run_for_study(self, study_name: str) -> RunRecord | None:
        with self._session() as session:
            row = session.scalar(select(Run).where(Run.study_name == study_name))
            return _run_record(row) if row else None

    def runs(self, target: str | None = None, states: tuple[str, ...] | None = None) -> list[RunRecord]:
        query = select(Run).join(Run.target).order_by(Run.id)
        if target is not None:
            query = query.where(Target.name == target)
        if states is not None:
            query = query.where(Run.state.in_(states))
        with self._session() as session:
            return [_run_record(row) for row in session.scalars(query)]

    def update_run(
        self,
        run_id: int,
        expected: tuple[str, ...] | None = None,
        owner: tuple[str | None, int | None] | None = None,
        **fields: Any,
    ) -> RunRecord | None:
        """Change a run; with ``expected``, only if its state is one of those, and with ``owner`` (host,
        pid), only if that worker still holds it (returns None otherwise), so concurrent updates cannot
        overwrite a newer state.

        One conditional UPDATE that the database commits as it runs: no lock on the run outlives the
        statement, so a worker frozen between two round trips (stopped, swapped out, its machine
        suspended) cannot block the service's cancel or supervision of the run.
        """
        change = update(Run).where(Run.id == run_id).values(**fields).returning(Run)
        if expected is not None:
            change = change.where(Run.state.in_(expected))
        if owner is not None:
            change = change.where(Run.host == owner[0], Run.pid == owner[1])  # None compares as IS NULL
        with self._autocommit_sessions() as session:
            row = session.scalar(change, execution_options={"synchronize_session": False})
            if row is not None:
                return _run_record(row)
            if session.get(Run, run_id) is None:
                raise StorageError(f"no run {run_id}")
            return None

    # --- trial slots (a study's shared budget) -------------------------------------------------------
    def slots(self, study_name: str) -> list[tuple[int, int | None, str, datetime]]:
        """(slot, trial number or None while pending, worker, claimed at) of every claimed slot."""
        with self._session() as session:
            rows = session.scalars(select(TrialSlot).where(TrialSlot.study_name == study_name))
            return [(r.slot, r.trial_number, r.worker, _utc(r.claimed_at)) for r in rows]

    def claim_slot(
        self, study_name: str, budget: int, worker: str, trial_number: int | None = None
    ) -> int | None:
        """Claim a free slot below ``budget`` (for ``trial_number`` if given); None when all are held."""
        taken = {slot for slot, *_ in self.slots(study_name)}
        for slot in range(budget):
            if slot in taken:
                continue
            try:
                with self._session() as session, session.begin():
                    session.add(
                        TrialSlot(study_name=study_name, slot=slot, trial_number=trial_number, worker=worker)
                    )
                return slot
            except IntegrityError:  # another worker took this slot (or already holds this trial)
                if trial_number is not None and any(n == trial_number for _, n, *_ in self.slots(study_name)):
                    return None
        return None

    def assign_slot(self, study_name: str, slot: int, trial_number: int) -> None:
        with self._session() as session, session.begin():
            row = session.get(TrialSlot, (study_name, slot))
            if row is not None:
                row.trial_number = trial_number

    def release_slot(self, study_name: str, slot: int) -> None:
        with self._session() as session, session.begin():
            row = session.get(TrialSlot, (study_name, slot))
            if row is not None:
                session.delete(row)

    # --- plaintext references ----------------------------------------------------------------------
    def plaintext_reference(self, key: str) -> float | None:
        with self._session() as session:
            row = session.get(PlaintextReference, key)
            return row.accuracy if row else None

    def store_plaintext_reference(self, key: str, accuracy: float) -> None:
        try:
            with self._session() as session, session.begin():
                session.add(PlaintextReference(key=key, accuracy=accuracy))
        except IntegrityError:  # measured by another worker meanwhile: same key, same value
            pass
