"""The project's own tables, beside Optuna's (own metadata, own ``shaketune_`` prefix).

Targets name what settings are chosen for (a model and a task). Selections record every decision about
a target's settings; rows are only ever added, so the history stays.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, MetaData, String, Text
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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

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
    leakage: Mapped[float] = mapped_column(Float)
    decision: Mapped[str] = mapped_column(String(20), default="selected")  # selected | kept
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    target: Mapped[Target] = relationship(back_populates="selections")


class PlaintextReference(Base):
    """Accuracy of plaintext tuning for one task, model, fidelity and budget: measured once, shared."""

    __tablename__ = "shaketune_plaintext_references"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    accuracy: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
