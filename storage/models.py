"""The project's own tables, beside Optuna's (own metadata, own ``shaketune_`` prefix).

Targets name what settings are chosen for (a model and a task). Selections record every decision about
a target's settings; rows are only ever added, so the history stays.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData()


class Target(Base):
    """A model and a task that settings are chosen for, with the caps its owner set."""

    __tablename__ = "shaketune_targets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    model: Mapped[str] = mapped_column(String(500))
    task: Mapped[dict[str, Any]] = mapped_column(JSON)
    task_fingerprint: Mapped[str] = mapped_column(String(64))
    caps: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    policy: Mapped[str] = mapped_column(String(50), default="max-accuracy")
    search: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=True)  # how to (re)optimise
    last_study: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # the directories the registering service could read (None: registered outside the service); its
    # workers check sources against them again when they load
    data_roots: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)

    selections: Mapped[list[Selection]] = relationship(back_populates="target", order_by="Selection.id")


class Selection(Base):
    """One decision: which settings a target uses from now on (or why it keeps the previous ones)."""

    __tablename__ = "shaketune_selections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("shaketune_targets.id"))
    study_name: Mapped[str] = mapped_column(String(200))
    trial_number: Mapped[int] = mapped_column(Integer)
    policy: Mapped[str] = mapped_column(String(50))
    caps: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    accuracy: Mapped[float] = mapped_column(Float)
    cost_gflops: Mapped[float] = mapped_column(Float)
    leakage: Mapped[float] = mapped_column(Float)  # the figure the study optimised (leakage_measure)
    leakage_measure: Mapped[str | None] = mapped_column(String(20), nullable=True)
    leakage_bound: Mapped[float | None] = mapped_column(Float, nullable=True)
    leakage_attacks: Mapped[float | None] = mapped_column(Float, nullable=True)
    strongest_bound_attack: Mapped[str | None] = mapped_column(String(200), nullable=True)
    strongest_attack: Mapped[str | None] = mapped_column(String(200), nullable=True)
    leakage_objective: Mapped[str | None] = mapped_column(String(20), nullable=True)  # sensitive | all
    leakage_bound_rare: Mapped[float | None] = mapped_column(Float, nullable=True)
    canary_recovery: Mapped[float | None] = mapped_column(Float, nullable=True)
    leakage_attacks_rare: Mapped[float | None] = mapped_column(Float, nullable=True)
    canary_recovery_attacks: Mapped[float | None] = mapped_column(Float, nullable=True)
    strongest_rare_attack: Mapped[str | None] = mapped_column(String(200), nullable=True)
    strongest_canary_attack: Mapped[str | None] = mapped_column(String(200), nullable=True)
    tokens_unchanged: Mapped[float | None] = mapped_column(Float, nullable=True)
    blind_floor: Mapped[float | None] = mapped_column(Float, nullable=True)
    accuracy_of: Mapped[str | None] = mapped_column(String(20), nullable=True)  # private | recovered
    baseline_accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)  # the most common label
    plaintext_accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)  # plaintext tuning
    private_accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    recovered_accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    # selected | kept | none-feasible (the closest setting measured, refused: see the reason)
    decision: Mapped[str] = mapped_column(String(20), default="selected")
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    target: Mapped[Target] = relationship(back_populates="selections")


ACTIVE_STATES = ("queued", "running", "cancelling")
_ACTIVE = text("state IN ('queued', 'running', 'cancelling')")


class Run(Base):
    """One optimisation of a target, run by a worker process: a study, its trial budget, its state.

    The database itself allows one active run per target (a partial unique index on SQLite and
    PostgreSQL alike), whoever starts it. A worker proves it is alive by ``heartbeat_at``; ``host`` and
    ``pid`` name it, ``attempts`` counts how often a dead worker's run was launched again.
    """

    __tablename__ = "shaketune_runs"
    __table_args__ = (
        Index(
            "shaketune_runs_one_active_per_target",
            "target_id",
            unique=True,
            sqlite_where=_ACTIVE,
            postgresql_where=_ACTIVE,
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("shaketune_targets.id"))
    study_name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20))  # study | reoptimise | scheduled
    state: Mapped[str] = mapped_column(String(20), default="queued")
    trials: Mapped[int] = mapped_column(Integer)
    warm_start_from: Mapped[str | None] = mapped_column(String(200), nullable=True)
    sampler_seed: Mapped[int] = mapped_column(Integer, default=0)
    host: Mapped[str | None] = mapped_column(String(200), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    attempts: Mapped[int | None] = mapped_column(Integer, default=0, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    target: Mapped[Target] = relationship()


class TrialSlot(Base):
    """One unit of a study's shared trial budget, held by a trial that runs or completed in it.

    Workers claim slots before asking for a trial, so however many workers share a study, it never
    completes more trials than its budget; a slot whose trial failed is released and claimed again.
    """

    __tablename__ = "shaketune_trial_slots"
    __table_args__ = (UniqueConstraint("study_name", "trial_number"),)

    study_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    worker: Mapped[str] = mapped_column(String(300))
    claimed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PlaintextReference(Base):
    """Accuracy of plaintext tuning for one task, model, fidelity and budget: measured once, shared."""

    __tablename__ = "shaketune_plaintext_references"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    accuracy: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
