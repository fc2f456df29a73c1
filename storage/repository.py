"""Reading and writing the project's tables; every write is one transaction (all or nothing)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from storage.engine import StorageError, get_engine
from storage.models import Base, PlaintextReference, Selection, Target


@dataclass(frozen=True)
class TargetRecord:
    name: str
    model: str
    task: dict[str, Any]
    task_fingerprint: str
    caps: dict[str, Any]
    policy: str
    created_at: datetime


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
    leakage: float
    decision: str = "selected"
    reason: str = ""
    created_at: datetime | None = None
    id: int | None = None


def _target_record(row: Target) -> TargetRecord:
    return TargetRecord(
        row.name, row.model, row.task, row.task_fingerprint, row.caps, row.policy, row.created_at
    )


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
        created_at=row.created_at,
        id=row.id,
    )


class Repository:
    """The project's tables on one database URL (created on first use)."""

    def __init__(self, url: str | None = None) -> None:
        self.engine = get_engine(url)
        Base.metadata.create_all(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

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
