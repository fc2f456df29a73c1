"""One trial: shaking settings in; measured accuracy, cost and leakage out.

The whole CypherTalk flow for one key: implant, encode the private training slice, attack what the cloud
sees (before any training, so hopeless settings can stop early), tune the shaken model on shaken ids,
measure accuracy by private inference, and compare with plaintext tuning at the same budget. A trial is a
plain function of its settings and seeds; it knows nothing of studies.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from objectives.attacks.view import PublicKnowledge
from objectives.canaries import Canaries, plant
from objectives.cost import (
    ModelShape,
    StageTime,
    Stopwatch,
    added_rows_flops,
    batch_shapes,
    embedding_memory_mb,
    implant_flops,
    peak_memory_mb,
    recovery_flops,
    reset_peak_memory,
)
from objectives.data import DataError, label_ids
from objectives.device import CPU, describe_device
from objectives.encoded import encode_token_ids
from objectives.evaluation import evaluate_accuracy, majority_accuracy
from objectives.leakage import (
    ALL,
    BOUND,
    Plaintext,
    StagedLeakage,
    StageLeakage,
    attack_count,
    check_measure,
    check_objective,
    measure_leakage,
    public_knowledge,
)
from objectives.lora import adapter_parameters
from objectives.models import DEFAULT_MODEL, load_tokenizer, pretrained_causal_lm, pretrained_classifier
from objectives.next_token import PreparedLM, evaluate_next_token, fine_tune_lm, prepare_lm_task
from objectives.recovery_training import RecoveryBudget, RecoveryRun, recovery_train_shaken, split_heldout
from objectives.rungs import Rungs
from objectives.task import TaskSpec
from objectives.tokens import length_sorted_batches, tokenize
from objectives.tuning import Checkpoint, TuningBudget, TuningRun, batch_plan, budget_from_dict, fine_tune
from operators.atomic import write_file_atomic
from operators.errors import SettingsError
from operators.homophonic import copy_counts, extra_rows
from operators.identity import vocabulary_tokens
from operators.implant import shake_model
from operators.key import ShakeKey, generate_key
from operators.recovery import recover_model
from operators.settings import ShakeSettings
from operators.vertical import dimension_count

EVAL_BATCH = 64
log = logging.getLogger("shaketune.trial")
# which accuracy a search maximises: the cloud's model by private inference (queries encoded, and
# substituted as an upload is), or the owner's recovered model on plaintext
PRIVATE, RECOVERED = "private", "recovered"
ACCURACY_OF = (PRIVATE, RECOVERED)


def check_accuracy_of(source: str) -> str:
    if source not in ACCURACY_OF:
        raise SettingsError(f"accuracy of must be one of {', '.join(ACCURACY_OF)}, got {source!r}")
    return source


Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class Fidelity:
    """How much data a trial sees: more is slower and measures more precisely."""

    train_size: int = 2000
    eval_size: int | None = None  # None: every row of the evaluation source
    max_length: int = 64
    attack_tuned: bool = False  # also attack the embedding after private tuning
    compare_recovery: bool = True  # with recovery training, also tune without it (accuracy_without_recovery)
    check_recovered: bool = False  # also recover the tuned model and measure it on plaintext

    def __post_init__(self) -> None:
        if self.train_size < 1:
            raise SettingsError(f"train_size must be >= 1, got {self.train_size}")
        if self.eval_size is not None and self.eval_size < 1:
            raise SettingsError(f"eval_size must be >= 1, got {self.eval_size}")
        if self.max_length < 4:
            raise SettingsError(f"max_length must be >= 4, got {self.max_length}")

    def to_dict(self) -> dict[str, Any]:
        """Fields added later are left out at their defaults, so stored references keep their keys."""
        data = asdict(self)
        if not self.check_recovered:
            data.pop("check_recovered")
        return data


@dataclass(frozen=True)
class TrialSettings:
    """Everything the search chooses: the shaking settings, the recovery-training and tuning budgets."""

    shaking: ShakeSettings
    tuning: TuningBudget = field(default_factory=TuningBudget)
    recovery: RecoveryBudget = field(default_factory=RecoveryBudget)

    def to_dict(self) -> dict[str, Any]:
        """The settings-file form: shaking fields at the top (so ``keygen`` reads it), ``tuning`` and,
        when on, ``recovery`` (left out when off, so settings from before it existed keep their form)."""
        recovery = {"recovery": self.recovery.to_dict()} if self.recovery.enabled else {}
        return {**self.shaking.to_dict(), "tuning": self.tuning.to_dict(), **recovery}

    @classmethod
    def from_dict(cls, data: Any) -> TrialSettings:
        if not isinstance(data, dict):
            raise SettingsError("settings must be a JSON object")
        shaking = ShakeSettings.from_dict({k: v for k, v in data.items() if k not in ("tuning", "recovery")})
        recovery = RecoveryBudget.from_dict(data.get("recovery", {}))
        tuning = budget_from_dict(TuningBudget, data.get("tuning", {}), "tuning")
        return cls(shaking, tuning, recovery)

    def describe_budget(self) -> str:
        """The tuning (and recovery-training) budget in one line, for tables."""
        tuning = self.tuning
        text = f"{tuning.steps} steps, lr {tuning.learning_rate:g}, {tuning.mode}"
        if self.recovery.enabled:
            text += f"; recovery {self.recovery.steps} steps ({self.recovery.part})"
        return text

    def save(self, path: str | Path) -> Path:
        return write_file_atomic(path, (json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n").encode())

    @classmethod
    def load(cls, path: str | Path) -> TrialSettings:
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise SettingsError(f"settings file not found: {path}") from None
        except json.JSONDecodeError as exc:
            raise SettingsError(f"{path}: not valid JSON (line {exc.lineno})") from None
        except SettingsError as exc:
            raise SettingsError(f"{path}: {exc}") from None


@dataclass(frozen=True)
class TrialResult:
    """The measured numbers of one trial; ``accuracy`` is None when it stopped before tuning."""

    settings: TrialSettings
    key_fingerprint: str
    leakage_bound: float  # informed-adversary bound: the key's invertible operators assumed known
    leakage_attacks: float  # the suite's best attack on the upload as it is: a lower bound
    attacks: dict[str, float]  # "stage/attack" -> recovery rate, the suite
    bound_attacks: dict[str, float]  # "stage/informed/attack" -> recovery rate, the informed view
    strongest_attack: str  # the suite's best, "stage/attack"
    strongest_bound_attack: str  # what sets the bound
    cost_gflops: float  # deterministic: the setting's implant + tuning + inference FLOPs
    flops: dict[str, float]
    seconds: dict[str, StageTime]
    peak_memory_mb: float
    embedding_memory_mb: float = 0.0  # the shaken input embedding in training (grows with homophones)
    accuracy: float | None = None  # classification accuracy, or next-token accuracy for a language model
    plaintext_accuracy: float | None = None
    perplexity: float | None = None  # language-model tasks: held-out perplexity by private inference
    plaintext_perplexity: float | None = None
    baseline_accuracy: float | None = None  # always answering the most common training label
    evaluated: int | None = None  # rows of the evaluation slice (classification)
    slice_warning: str = ""  # a data slice whose labels are in other shares than its source's
    accuracy_without_recovery: float | None = None  # same key and tuning, recovery training skipped
    recovered_accuracy: float | None = None  # the recovered model on plaintext (Fidelity.check_recovered)
    recovery: RecoveryRun | None = None
    stopped_early: bool = False
    accuracy_by_steps: dict[str, float] = field(default_factory=dict)  # rung scores: steps done -> accuracy
    stopped_at_steps: int | None = None  # a rung did not promote it: tuning ended after this many steps
    leakage_reused: bool = False  # the figures of an earlier measurement of the same shaking and key
    device: str = "cpu"  # where the models and the attacks' matrix products ran (describe_device)
    task_kind: str = "classification"  # or "lm": accuracy is then next-token accuracy
    # the same figures on the occurrences that matter (objectives/attacks/scoring.py): rare tokens and
    # planted secrets, by the informed bound and by the suite; None where not scored (stored before)
    leakage_bound_rare: float | None = None
    canary_recovery: float | None = None  # the bound's attacker on planted secrets
    leakage_attacks_rare: float | None = None
    canary_recovery_attacks: float | None = None
    strongest_rare_attack: str = ""  # what sets leakage_bound_rare
    strongest_canary_attack: str = ""  # what sets canary_recovery
    blind_floor: float | None = None  # always naming the most frequent public token, on every token
    tokens_unchanged: float | None = None  # share of private tokens uploaded as written (pi aside; keys
    rare_unchanged: float | None = None  # that substitute only); the same on rare tokens
    leakage_report: StagedLeakage | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(
        cls,
        settings: TrialSettings,
        key_fingerprint: str,
        leakage: StagedLeakage,
        flops: dict[str, float],
        **measured: Any,
    ) -> TrialResult:
        """A result whose leakage fields come from ``leakage`` and whose cost from ``flops``."""
        exposure = leakage.exposure
        # the unchanged shares say something only where occurrences are substituted (else every token
        # reaches the cloud as written, permutation aside, and the rows decide)
        unchanged = exposure.unchanged if exposure and settings.shaking.substitute.enabled else None
        return cls(
            settings=settings,
            key_fingerprint=key_fingerprint,
            leakage_bound=leakage.bound,
            leakage_attacks=leakage.attacks,
            attacks=leakage.per_attack(),
            bound_attacks=leakage.per_informed_attack(),
            strongest_attack=leakage.strongest,
            strongest_bound_attack=leakage.strongest_bound,
            cost_gflops=sum(flops.values()) / 1e9,
            flops=flops,
            leakage_report=leakage,
            leakage_bound_rare=leakage.on("rare"),
            canary_recovery=leakage.on("canary"),
            leakage_attacks_rare=leakage.on("rare", "attacks"),
            canary_recovery_attacks=leakage.on("canary", "attacks"),
            strongest_rare_attack=leakage.strongest_on("rare"),
            strongest_canary_attack=leakage.strongest_on("canary"),
            blind_floor=exposure.floor.all if exposure else None,
            tokens_unchanged=unchanged.all if unchanged else None,
            rare_unchanged=unchanged.rare if unchanged else None,
            **measured,
        )

    def leakage(self, measure: str, objective: str = ALL) -> float:
        """The figure a study optimises: ``bound`` or ``attacks``, on every token (``all``) or the worse
        of rare tokens and planted secrets (``sensitive``)."""
        if self.leakage_report is not None:
            return self.leakage_report.figure(measure, objective)
        return self._stored_leakage(check_measure(measure), check_objective(objective))

    def _stored_leakage(self, measure: str, objective: str) -> float:
        """The figure from the stored fields alone (a result rebuilt without its report)."""
        if objective == ALL:
            return self.leakage_bound if measure == BOUND else self.leakage_attacks
        pair = (
            (self.leakage_bound_rare, self.canary_recovery)
            if measure == BOUND
            else (self.leakage_attacks_rare, self.canary_recovery_attacks)
        )
        values = [v for v in pair if v is not None]
        return max(values) if values else self._stored_leakage(measure, ALL)

    def accuracy_of(self, source: str = PRIVATE) -> float | None:
        """The accuracy by private inference, or the recovered model's (where measured; a 1:1 key's is
        the same)."""
        if check_accuracy_of(source) == RECOVERED and self.recovered_accuracy is not None:
            return self.recovered_accuracy
        return self.accuracy

    @property
    def accuracy_gap(self) -> float | None:
        """Plaintext accuracy minus private accuracy at the same budget (positive: shaking costs)."""
        if self.accuracy is None or self.plaintext_accuracy is None:
            return None
        return self.plaintext_accuracy - self.accuracy

    @property
    def recovered_gap(self) -> float | None:
        """Plaintext accuracy minus the recovered model's on plaintext (where measured)."""
        if self.recovered_accuracy is None or self.plaintext_accuracy is None:
            return None
        return self.plaintext_accuracy - self.recovered_accuracy

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings.to_dict(),
            "key_fingerprint": self.key_fingerprint,
            "accuracy": self.accuracy,
            "plaintext_accuracy": self.plaintext_accuracy,
            "perplexity": self.perplexity,
            "plaintext_perplexity": self.plaintext_perplexity,
            "baseline_accuracy": self.baseline_accuracy,
            "evaluated": self.evaluated,
            "slice_warning": self.slice_warning,
            "accuracy_gap": self.accuracy_gap,
            "accuracy_without_recovery": self.accuracy_without_recovery,
            "recovered_accuracy": self.recovered_accuracy,
            "recovered_gap": self.recovered_gap,
            "recovery": self.recovery.to_dict() if self.recovery else None,
            "leakage_bound": self.leakage_bound,
            "leakage_attacks": self.leakage_attacks,
            "leakage_bound_rare": self.leakage_bound_rare,
            "canary_recovery": self.canary_recovery,
            "leakage_attacks_rare": self.leakage_attacks_rare,
            "canary_recovery_attacks": self.canary_recovery_attacks,
            "strongest_rare_attack": self.strongest_rare_attack,
            "strongest_canary_attack": self.strongest_canary_attack,
            "blind_floor": self.blind_floor,
            "tokens_unchanged": self.tokens_unchanged,
            "rare_unchanged": self.rare_unchanged,
            "strongest_attack": self.strongest_attack,
            "strongest_bound_attack": self.strongest_bound_attack,
            "attacks": self.attacks,
            "bound_attacks": self.bound_attacks,
            "cost_gflops": self.cost_gflops,
            "flops": self.flops,
            "seconds": {stage: asdict(t) for stage, t in self.seconds.items()},
            "peak_memory_mb": self.peak_memory_mb,
            "embedding_memory_mb": self.embedding_memory_mb,
            "stopped_early": self.stopped_early,
            "accuracy_by_steps": self.accuracy_by_steps,
            "stopped_at_steps": self.stopped_at_steps,
            "leakage_reused": self.leakage_reused,
            "leakage_stages": self.leakage_report.to_dict() if self.leakage_report else None,
            "device": self.device,
            "task_kind": self.task_kind,
        }


@dataclass(frozen=True)
class PreparedTask:
    """A task tokenised once: private training slice, evaluation slice, public text; integer labels."""

    train_ids: list[list[int]]
    train_labels: list[int]
    eval_ids: list[list[int]]
    eval_labels: list[int]
    public_ids: list[list[int]]
    num_labels: int
    pad_id: int
    slice_warning: str = ""  # the slices' labels are in other shares than their sources' (file order)

    @property
    def baseline_accuracy(self) -> float:
        """Accuracy on the evaluation slice of always answering the training slice's most common label:
        a setting at or near it has not learnt the task, whatever its leakage."""
        return majority_accuracy(self.train_labels, self.eval_labels)

    @property
    def evaluated(self) -> int:
        """Rows of the evaluation slice: how precise an accuracy on it is."""
        return len(self.eval_labels)


@dataclass(frozen=True)
class AttackedUpload:
    """What a trial's attacks read (the shaken training ids, canaries planted after them) and the
    plaintext they are scored against."""

    shaken: list[list[int]]
    plaintext: Plaintext


@functools.lru_cache(maxsize=8)
def prepare_task(task: TaskSpec, model: str, fidelity: Fidelity) -> PreparedTask:
    """Load and tokenise the task's data (once per process for each task, model and fidelity)."""
    tokenizer = load_tokenizer(model)
    train, evaluation, public_texts = task.load_train(), task.load_eval(), task.load_public()
    train_texts, train_raw = train.texts[: fidelity.train_size], train.labels[: fidelity.train_size]
    eval_texts, eval_raw = evaluation.texts[: fidelity.eval_size], evaluation.labels[: fidelity.eval_size]
    unseen = sorted(set(map(str, eval_raw)) - set(map(str, train_raw)))
    if unseen:
        raise DataError(
            f"evaluation labels {unseen[:5]} never occur in the training slice ({task.train}); "
            "the label sets of the splits must match"
        )
    if {type(x) for x in eval_raw} != {type(x) for x in train_raw}:
        raise DataError("training labels and evaluation labels are of different types")
    train_labels, names = label_ids(list(train_raw))
    index = {name: i for i, name in names.items()} if names else None
    eval_labels = [index[x] for x in eval_raw] if index else list(eval_raw)
    skewed = [
        warning
        for warning in (
            slice_skew("training", task.train, train_raw, train.labels),
            slice_skew("evaluation", task.eval, eval_raw, evaluation.labels),
        )
        if warning
    ]
    for warning in skewed:
        log.warning(warning)
    return PreparedTask(
        train_ids=tokenize(tokenizer, train_texts, fidelity.max_length),
        train_labels=train_labels,
        eval_ids=tokenize(tokenizer, eval_texts, fidelity.max_length),
        eval_labels=eval_labels,
        public_ids=tokenize(tokenizer, public_texts, fidelity.max_length),
        num_labels=max(train_labels) + 1,
        pad_id=tokenizer.pad_token_id or 0,
        slice_warning="; ".join(skewed),
    )


SKEW_LIMIT = 0.2  # total variation between a slice's label shares and its source's that is warned about


def slice_skew(name: str, source: Any, sliced: list, whole: list) -> str:
    """A warning when a slice (the first rows in file order) holds labels in other shares than its whole
    source, as a file sorted by label gives; empty when it is a fair sample or the whole source."""
    if len(sliced) >= len(whole) or not sliced:
        return ""
    shares = lambda labels: {k: v / len(labels) for k, v in Counter(map(str, labels)).items()}  # noqa: E731
    part, full = shares(sliced), shares(whole)
    distance = 0.5 * sum(abs(part.get(k, 0.0) - full.get(k, 0.0)) for k in full.keys() | part.keys())
    if distance <= SKEW_LIMIT:
        return ""
    top = max(part, key=part.get)
    return (
        f"the {name} slice (the first {len(sliced)} rows of {source} in file order) is skewed: "
        f"{part[top]:.0%} of it has one label, which is {full.get(top, 0.0):.0%} of the source; shuffle the "
        "file or choose a row range that samples every label"
    )


PERPLEXITY_SUFFIX = "/perplexity"  # a language-model reference's perplexity, beside its accuracy


@dataclass(frozen=True)
class Score:
    """What evaluation measures: accuracy, and a language model's perplexity."""

    accuracy: float
    perplexity: float | None = None


ANSWER = "label, or next token for a language model"
LEARNT_MARGIN = 0.01  # accuracy within this of the baseline: the task was not learnt


def learnt_margin(baseline: float, evaluated: int | None = None) -> float:
    """How far above the baseline an accuracy must be to count as learnt: a point, or two standard errors
    of the baseline's accuracy on ``evaluated`` rows where that is more (a small evaluation is noisy)."""
    if not evaluated:
        return LEARNT_MARGIN
    return max(LEARNT_MARGIN, 2.0 * math.sqrt(baseline * (1.0 - baseline) / evaluated))


def not_learnt(accuracy: float | None, baseline: float | None, evaluated: int | None = None) -> bool:
    """True when an accuracy is no better than always answering the most common label, within
    :func:`learnt_margin` (``evaluated``: rows it was measured on, when known)."""
    if accuracy is None or baseline is None:
        return False
    return accuracy <= baseline + learnt_margin(baseline, evaluated)


def baseline_note(accuracy: float | None, baseline: float | None, evaluated: int | None = None) -> str:
    """How an accuracy compares with always answering the most common label; loud when it is no better."""
    if accuracy is None or baseline is None:
        return ""
    if not_learnt(accuracy, baseline, evaluated):
        return f"; NOT LEARNT: always giving the most common answer ({ANSWER}) scores {baseline:.4f}"
    return f"; the most common answer alone scores {baseline:.4f}"


class ReferenceCache(Protocol):
    """Where plaintext reference accuracies persist across processes (e.g. the study database)."""

    def get(self, key: str) -> float | None: ...

    def put(self, key: str, accuracy: float) -> None: ...


class MemoryReferences:
    """A reference cache in this process only (benchmarks running several studies on one objective)."""

    def __init__(self) -> None:
        self._values: dict[str, float] = {}

    def get(self, key: str) -> float | None:
        return self._values.get(key)

    def put(self, key: str, accuracy: float) -> None:
        self._values[key] = accuracy


def _counter(stage: str, total: int, report: Progress) -> Callable[[int], None]:
    """An ``advance(n)`` callback that reports a stage's running count."""
    done = 0
    report(stage, 0, total)

    def advance(n: int) -> None:
        nonlocal done
        done += n
        report(stage, done, total)

    return advance


def trial_key_seed(seed: int) -> bytes:
    """The key seed of a trial: derived from the trial seed so a trial can be repeated exactly.

    Trial keys only measure settings; real keys come from ``shaketune keygen`` and a CSPRNG.
    """
    return hashlib.sha256(f"shaketune/trial-key/{seed}".encode()).digest()


class TrialRunner:
    """Runs trials of one task and model at one fidelity; data and weights load once per process.

    Models train, infer and are attacked on ``device``; keys, implantation and encoding stay on the CPU.
    """

    def __init__(
        self,
        task: TaskSpec,
        model: str = DEFAULT_MODEL,
        fidelity: Fidelity | None = None,
        references: ReferenceCache | None = None,
        device: torch.device = CPU,
    ):
        self.task = task
        self.model_name = model
        self.fidelity = fidelity or Fidelity()
        self.references = references
        self.device = device
        self._plaintext: dict[str, Score] = {}
        self._adapters: dict[tuple[int, str], int] = {}

    @functools.cached_property
    def data(self) -> PreparedTask | PreparedLM:
        if self.task.is_lm:
            return prepare_lm_task(self.task, self.model_name, self.fidelity)
        return prepare_task(self.task, self.model_name, self.fidelity)

    @functools.cached_property
    def tokenizer(self) -> Any:
        return load_tokenizer(self.model_name)

    @functools.cached_property
    def tokens(self) -> list[str]:
        """Every vocabulary id's token string (substitution's classes of tokens read them)."""
        return vocabulary_tokens(self.tokenizer, self.public.vocab_size)

    def pretrained(self) -> nn.Module:
        """A fresh copy of the pretrained model: a classifier, or the causal LM of a language-model task."""
        if self.task.is_lm:
            return pretrained_causal_lm(self.model_name)
        return pretrained_classifier(self.model_name, self.data.num_labels)

    @functools.cached_property
    def public(self) -> PublicKnowledge:
        """The attacker's knowledge; its model (which function matching runs) on the runner's device."""
        model = self.pretrained().to(self.device)
        return public_knowledge(model, self.data.public_ids, self.tokenizer.all_special_ids)

    @functools.cached_property
    def shape(self) -> ModelShape:
        return ModelShape.of(self.pretrained())

    def added_rows(self, shaking: ShakeSettings) -> int:
        """Embedding rows a homophonic setting adds (copy counts come from the public prior)."""
        if not shaking.homophones.enabled:
            return 0
        counts = copy_counts(self.public.prior, self.public.special_ids, shaking.homophones.max_share)
        return extra_rows(counts)

    def flops(self, settings: TrialSettings, seed: int) -> dict[str, float]:
        """The deterministic cost of a setting, known before anything runs."""
        hidden = self.shape.hidden
        dims = [(op.op, dimension_count(op.dimension, hidden, op.op)) for op in settings.shaking.vertical]
        plan = batch_plan(len(self.data.train_ids), settings.tuning, seed)
        evaluation = length_sorted_batches([len(s) for s in self.data.eval_ids], EVAL_BATCH)
        added = self.added_rows(settings.shaking)
        shape = self.shape.with_vocabulary(self.shape.vocab + added)  # a tied head grows with the copies
        flops = {
            "implant": implant_flops(self.shape.vocab + added, dims),
            "tuning": shape.training_flops(
                batch_shapes(self.data.train_ids, plan), settings.tuning.mode, self.adapters(settings.tuning)
            ),
            "inference": shape.forward_flops(batch_shapes(self.data.eval_ids, evaluation)),
            "recovery": self._recovery_flops(settings.recovery, seed),
        }
        if added:  # copy noise, and the optimiser's updates of the added rows at every training step
            steps = settings.tuning.steps + settings.recovery.steps
            flops["added_rows"] = added_rows_flops(
                added, hidden, settings.shaking.homophones.copy_noise, steps
            )
        return flops

    def adapters(self, tuning: TuningBudget) -> int:
        """LoRA parameters the tuning trains (0 outside mode lora; counted once per rank and targets)."""
        if tuning.mode != "lora":
            return 0
        key = (tuning.lora_rank, tuning.lora_targets)
        if key not in self._adapters:
            self._adapters[key] = adapter_parameters(self.pretrained(), *key)
        return self._adapters[key]

    def _recovery_flops(self, budget: RecoveryBudget, seed: int) -> float:
        """Recovery training is paid once per key, however many tuning jobs reuse the key."""
        if not budget.enabled:
            return 0.0
        corpus, _ = split_heldout(self.data.public_ids)
        return recovery_flops(
            self.shape,
            batch_shapes(corpus, batch_plan(len(corpus), budget, seed)),
            budget.part,
            budget.objective,
        )

    def reference_key(self, tuning: TuningBudget, seed: int) -> str:
        """Identifies a plaintext reference: task content, model, fidelity, budget and seed (and the device
        type off the CPU, whose numbers differ slightly; CPU keys stay as they were)."""
        parts = [self.task.fingerprint(), self.model_name, self.fidelity.to_dict(), tuning.to_dict(), seed]
        if self.device.type != "cpu":
            parts.append(self.device.type)
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def plaintext_accuracy(self, tuning: TuningBudget, seed: int) -> float:
        """Accuracy of plaintext tuning at the same budget (measured once, then cached)."""
        return self.plaintext_score(tuning, seed).accuracy

    def plaintext_score(self, tuning: TuningBudget, seed: int) -> Score:
        """Accuracy (and a language model's perplexity) of plaintext tuning at the same budget, measured
        once, then cached (perplexity under the reference's key + "/perplexity")."""
        key = self.reference_key(tuning, seed)
        if key not in self._plaintext:
            accuracy = self.references.get(key) if self.references else None
            perplexity = self.references.get(key + PERPLEXITY_SUFFIX) if self.references else None
            if accuracy is None or (self.task.is_lm and perplexity is None):
                model = self.pretrained()
                self._train(model, self.data.train_ids, tuning, seed)
                measured = self._evaluate(model)
                accuracy, perplexity = measured.accuracy, measured.perplexity
                if self.references:
                    self.references.put(key, accuracy)
                    if perplexity is not None:
                        self.references.put(key + PERPLEXITY_SUFFIX, perplexity)
            self._plaintext[key] = Score(accuracy, perplexity)
        return self._plaintext[key]

    def _train(
        self,
        model: nn.Module,
        train_ids: list[list[int]],
        budget: TuningBudget,
        seed: int,
        advance: Callable[[int], None] | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> TuningRun:
        """Tune ``model`` on (plaintext or shaken) training ids with the task's loss, on the device."""
        data = self.data
        if isinstance(data, PreparedLM):
            return fine_tune_lm(
                model,
                train_ids,
                data.train_loss_from,
                budget,
                data.pad_id,
                seed,
                advance,
                self.device,
                checkpoint,
            )
        return fine_tune(
            model, train_ids, data.train_labels, budget, data.pad_id, seed, advance, self.device, checkpoint
        )

    def _evaluate(self, model: nn.Module, key: ShakeKey | None = None) -> Score:
        """The task's score on the evaluation slice; with ``key`` by private inference, whose homophonic
        copy choices repeat for the same key."""
        data = self.data
        source = key.occurrence_stream("inference") if key is not None else None
        model.to(self.device)
        if isinstance(data, PreparedLM):
            score = evaluate_next_token(model, data.eval_ids, data.eval_loss_from, data.pad_id, key, source)
            return Score(score.accuracy, score.perplexity)
        accuracy = evaluate_accuracy(
            model, data.eval_ids, data.eval_labels, data.pad_id, key=key, source=source
        )
        return Score(accuracy.accuracy)

    def run(
        self,
        settings: TrialSettings,
        key_seed: int = 0,
        tuning_seed: int = 0,
        stop: Callable[[StagedLeakage], bool] | None = None,
        progress: Progress | None = None,
        rungs: Rungs | None = None,
        known_leakage: StagedLeakage | None = None,
    ) -> TrialResult:
        """Measure one setting; ``stop`` sees the leakage (both figures) before training and after recovery
        training, and may end the trial there; ``rungs`` pause the private tuning for a validation score
        and end it where they do not promote it.

        ``key_seed`` makes the trial's key; ``tuning_seed`` the batch order and dropout, which a study
        keeps fixed so that settings are compared on the same tuning noise (and share references).
        ``known_leakage``: what the attacks found on this very key and shaking before (the same seed and
        settings make the same upload), reused instead of attacking again.
        """
        report = progress or (lambda stage, done, total: None)
        data = self.data
        reset_peak_memory()
        seconds: dict[str, StageTime] = {}
        flops = self.flops(settings, tuning_seed)

        report("shaking", 0, 1)
        with Stopwatch() as watch:
            model = self.pretrained()
            seed_bytes = trial_key_seed(key_seed)
            key = generate_key(
                settings.shaking, model, self.tokenizer, self.model_name, seed_bytes, self.public.prior
            ).with_mechanism(self.public.embedding, self.tokens)
            shaken = shake_model(model, key).to(self.device)  # implanted on the CPU, then moved
            shaken_train = encode_token_ids(key, data.train_ids, key.occurrence_stream("train"))
            upload = self._attacked_upload(key, shaken_train, tuning_seed)
        seconds["shaking"] = watch.time

        reused = known_leakage is not None and "shaken" in known_leakage.stages
        if reused:  # the same key and shaking were attacked before: no attack runs (no "attacks" time)
            leakage = StagedLeakage({"shaken": known_leakage.stages["shaken"]})
        else:
            with Stopwatch() as watch:
                leakage = StagedLeakage({"shaken": self._attack(shaken, upload, key, report)})
            seconds["attacks"] = watch.time

        def finish(**measured: Any) -> TrialResult:
            return self._result(settings, key, leakage, flops, seconds, leakage_reused=reused, **measured)

        if stop is not None and stop(leakage):
            return finish(stopped_early=True)

        recovered: dict[str, Any] = {}
        without_recovery = None
        if settings.recovery.enabled:
            if self.fidelity.compare_recovery:
                without_recovery = copy.deepcopy(shaken)
            with Stopwatch() as watch:
                recovered["recovery"] = self._recovery_train(
                    shaken, key, settings.recovery, tuning_seed, report
                )
            seconds["recovery"] = watch.time
            with Stopwatch() as watch:
                if reused and "recovered" in known_leakage.stages:
                    recovered_stage = known_leakage.stages["recovered"]
                else:
                    recovered_stage = self._attack(shaken, upload, key, report, trained_body=True)
                stages = dict(leakage.stages, recovered=recovered_stage)
                leakage = StagedLeakage(stages)
            seconds["attacks_recovered"] = watch.time
            if stop is not None and stop(leakage):
                return finish(stopped_early=True, **recovered)

        by_steps: dict[str, float] = {}
        with Stopwatch() as watch:
            done = self._tune(
                shaken, shaken_train, settings.tuning, tuning_seed, report, key, rungs, by_steps
            )
        seconds["tuning"] = watch.time
        if done < settings.tuning.steps:  # a rung did not promote it
            return finish(stopped_early=True, accuracy_by_steps=by_steps, stopped_at_steps=done, **recovered)

        if self.fidelity.attack_tuned:
            with Stopwatch() as watch:
                tuned = self._attack(shaken, upload, key, report, trained_body=True)
                stages = dict(leakage.stages, tuned=tuned)
            leakage = StagedLeakage(stages)
            seconds["attacks_tuned"] = watch.time

        report("inference", 0, 1)
        with Stopwatch() as watch:
            private = self._evaluate(shaken, key)
        seconds["inference"] = watch.time
        if self.fidelity.check_recovered or key.substitutes:  # substitution: both ways of using it
            with Stopwatch() as watch:
                recovered["recovered_accuracy"] = self._recovered_accuracy(shaken, key)
            seconds["recovered_inference"] = watch.time

        if without_recovery is not None:
            with Stopwatch() as watch:
                self._tune(without_recovery, shaken_train, settings.tuning, tuning_seed, report)
                recovered["accuracy_without_recovery"] = self._evaluate(without_recovery, key).accuracy
            seconds["without_recovery"] = watch.time

        report("plaintext reference", 0, 1)
        with Stopwatch() as watch:
            plaintext = self.plaintext_score(settings.tuning, tuning_seed)
        seconds["plaintext_reference"] = watch.time
        if rungs is not None:
            by_steps[str(settings.tuning.steps)] = private.accuracy
        return finish(
            accuracy=private.accuracy,
            accuracy_by_steps=by_steps,
            perplexity=private.perplexity,
            plaintext_accuracy=plaintext.accuracy,
            plaintext_perplexity=plaintext.perplexity,
            **recovered,
        )

    def _recovered_accuracy(self, shaken: nn.Module, key: ShakeKey) -> float:
        """Plaintext accuracy of the model the owner recovers (on the CPU, with the key) from the tuned
        shaken one."""
        model = copy.deepcopy(shaken).to(CPU)
        recover_model(model, key)
        return self._evaluate(model).accuracy

    def _tune(
        self,
        model: nn.Module,
        shaken_train: list[list[int]],
        budget: TuningBudget,
        seed: int,
        report: Progress,
        key: ShakeKey | None = None,
        rungs: Rungs | None = None,
        by_steps: dict[str, float] | None = None,
    ) -> int:
        """Private tuning; at each of ``rungs``' steps the model is scored by private inference (into
        ``by_steps``) and goes on only if promoted. Returns the steps taken."""
        checkpoint = None
        if rungs is not None and key is not None and by_steps is not None:

            def checkpoint(done: int) -> bool:
                if done not in rungs.steps:
                    return True
                accuracy = self._evaluate(model, key).accuracy
                by_steps[str(done)] = accuracy
                return rungs.promote(done, accuracy)

        advance = _counter("tuning", budget.steps, report)
        return self._train(model, shaken_train, budget, seed, advance, checkpoint).steps

    def _recovery_train(
        self, shaken: nn.Module, key: ShakeKey, budget: RecoveryBudget, seed: int, report: Progress
    ) -> RecoveryRun:
        advance = _counter("recovery training", budget.steps, report)
        public = self.data.public_ids
        return recovery_train_shaken(
            shaken, key, self.model_name, self.tokenizer, public, budget, seed, advance, self.device
        )

    def canaries(self, seed: int) -> Canaries:
        """The canaries planted in the attacked copy of the upload (the same for a study's every setting)."""
        return plant(self.tokenizer, seed, self.fidelity.max_length)

    def _attacked_upload(self, key: ShakeKey, shaken_train: list[list[int]], seed: int) -> AttackedUpload:
        """The training upload with canaries planted after it (encoded with the same key), and the
        plaintext both came from: what the attacks read and are scored against. Tuning never sees them."""
        canaries = self.canaries(seed)
        shaken_canaries = encode_token_ids(key, canaries.token_ids, key.occurrence_stream("canaries"))
        train = self.data.train_ids
        return AttackedUpload(
            shaken_train + shaken_canaries,
            Plaintext(
                train + canaries.token_ids,
                [[False] * len(s) for s in train] + [[True] * len(s) for s in canaries.token_ids],
                [[False] * len(s) for s in train] + canaries.secret,
            ),
        )

    def _attack(
        self,
        shaken: nn.Module,
        upload: AttackedUpload,
        key: ShakeKey,
        report: Progress,
        trained_body: bool = False,
    ) -> StageLeakage:
        """Both leakage figures of one stage; ``trained_body``: the cloud also holds a body trained on
        shaken ids (after recovery training or tuning), which function matching runs."""
        total = attack_count(
            key.shaken_vocab_size, self.public, trained_body, substituted=key.substitutes, mixed=key.mixes
        )
        advance = _counter("attacks", total, report)
        with torch.no_grad():
            return measure_leakage(
                shaken,
                upload.shaken,
                self.public,
                key,
                lambda name: advance(1),
                trained_body,
                self.device,
                upload.plaintext,
            )

    def _result(
        self,
        settings: TrialSettings,
        key: ShakeKey,
        leakage: StagedLeakage,
        flops: dict[str, float],
        seconds: dict[str, StageTime],
        **measured: Any,
    ) -> TrialResult:
        return TrialResult.of(
            settings,
            key.fingerprint,
            leakage,
            flops,
            seconds=seconds,
            peak_memory_mb=peak_memory_mb(),
            embedding_memory_mb=embedding_memory_mb(key.shaken_vocab_size, self.shape.hidden),
            baseline_accuracy=self.data.baseline_accuracy,
            evaluated=getattr(self.data, "evaluated", None),
            slice_warning=getattr(self.data, "slice_warning", ""),
            task_kind=self.task.kind,
            device=describe_device(self.device),
            **measured,
        )
