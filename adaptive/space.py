"""The search space: shaking settings and tuning budget as Optuna parameters (define-by-run).

Parameters: ``coverage`` (the horizontal share), one ``use_<op>`` switch per vertical operator (which
operators, hence how many), and for each switched-on operator ``<op>.intensity`` and ``<op>.dimension``
(conditional parameters); ``homophones.max_share`` (frequency flattening; 1.0 is a 1:1 permutation) and,
below 1, ``homophones.copy_noise``; ``use_substitute`` (per-occurrence substitution) and, when on,
``substitute.epsilon`` (log scale), ``substitute.keep_top``, ``substitute.candidates`` (and for clusters
``substitute.k``) and ``substitute.classes`` (what is substituted whatever its frequency: numbers, and
whole words or word continuations); ``use_mix`` (cluster mixing of the embedding rows) and, when on,
``mix.k``, ``mix.tau`` (log scale) and ``mix.noise``; ``recovery.steps`` and, when above 0,
``recovery.part`` (recovery training on public text); then ``tuning.steps``, ``tuning.learning_rate``
and ``tuning.mode`` (and, for mode lora, ``tuning.lora_rank``, with alpha twice the rank, a common choice
that keeps the update scale fixed across ranks). The chain applies the chosen operators in a fixed order:
linear maps first (tilt, inflate, addv), noise last; mixing comes before the chain. The budget takes
values from short lists so that plaintext references are shared between trials.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import optuna

from objectives.lora import AUTO_TARGETS
from objectives.recovery_training import RECOVERY_OBJECTIVES, RECOVERY_PARTS, RecoveryBudget
from objectives.trial import TrialSettings
from objectives.tuning import TUNING_MODES, TuningBudget
from operators.errors import SettingsError
from operators.settings import (
    CANDIDATES,
    MAX_CLUSTER,
    MAX_COPY_NOISE,
    MAX_EPSILON,
    MAX_KEEP_TOP,
    MAX_MIX_K,
    MAX_MIX_NOISE,
    MAX_MIX_TAU,
    MIN_MAX_SHARE,
    MIN_MIX_TAU,
    HomophoneSettings,
    MixSettings,
    OperatorSettings,
    ShakeSettings,
    SubstituteSettings,
)
from operators.vertical import OPERATORS

CHAIN_ORDER = ("tilt", "inflate", "addv", "dx-fixp", "gaussian", "laplace")
INTENSITY_RANGES = {
    "tilt": (0.1, 1.5),
    "inflate": (0.05, 2.0),
    "addv": (0.1, 4.0),
    "dx-fixp": (0.1, 8.0),  # noise: the informed-adversary bound only falls well above 4x the scale
    "gaussian": (0.1, 8.0),
    "laplace": (0.1, 8.0),
}
DIMENSION_RANGE = (0.05, 1.0)
COPY_NOISE_RANGE = (0.0, 4.0)


@dataclass(frozen=True)
class SearchSpace:
    """Ranges and choices of the search; stored with the study so every worker searches the same."""

    coverage: tuple[float, float] = (0.0, 1.0)
    operators: tuple[str, ...] = CHAIN_ORDER
    steps: tuple[int, ...] = (50, 100, 150, 300)
    learning_rates: tuple[float, ...] = (3e-5, 1e-4)
    modes: tuple[str, ...] = ("full", "embeddings+head")
    batch_size: int = 16
    recovery_steps: tuple[int, ...] = (0, 200)
    recovery_parts: tuple[str, ...] = ("all", "embeddings")
    recovery_objective: str = "distill"
    max_shares: tuple[float, ...] = (1.0, 0.005, 0.002)
    copy_noise: tuple[float, float] = COPY_NOISE_RANGE
    lora_ranks: tuple[int, ...] = (8,)
    lora_targets: str = AUTO_TARGETS
    substitute: tuple[bool, ...] = (False, True)  # per-occurrence substitution off, on
    substitute_epsilon: tuple[float, float] = (0.5, 16.0)  # searched on a log scale
    substitute_keep_top: tuple[int, ...] = (0, 100, 300, 1000, 3000)
    # kept keeps meaning only at eps >= 100, far above the epsilon range: asked for by name
    substitute_candidates: tuple[str, ...] = ("vocabulary", "clusters", "mask")
    substitute_k: tuple[int, ...] = (10, 20, 50)
    substitute_classes: tuple[str, ...] = ("numbers+words", "numbers", "numbers+pieces")
    mix: tuple[bool, ...] = (False, True)  # cluster mixing of the embedding rows off, on
    mix_k: tuple[int, ...] = (10, 20, 50, 100)
    mix_tau: tuple[float, float] = (0.1, 2.0)  # searched on a log scale
    mix_noise: tuple[float, float] = (0.0, 4.0)

    def __post_init__(self) -> None:
        low, high = self.coverage
        if not 0.0 <= low <= high <= 1.0:
            raise SettingsError(f"coverage range must lie in [0, 1], got {self.coverage}")
        unknown = [op for op in self.operators if op not in OPERATORS]
        if unknown:
            raise SettingsError(f"unknown operator(s) {unknown}; choose from {', '.join(OPERATORS)}")
        if not self.steps or min(self.steps) < 1:
            raise SettingsError("steps must be positive integers")
        if not self.learning_rates or not all(0 < lr < 1 for lr in self.learning_rates):
            raise SettingsError("learning rates must lie in (0, 1)")
        if not self.recovery_steps or min(self.recovery_steps) < 0:
            raise SettingsError("recovery steps must be integers >= 0 (0: no recovery training)")
        bad_parts = [p for p in self.recovery_parts if p not in RECOVERY_PARTS]
        if not self.recovery_parts or bad_parts:
            raise SettingsError(f"recovery parts must be among {', '.join(RECOVERY_PARTS)}")
        if self.recovery_objective not in RECOVERY_OBJECTIVES:
            raise SettingsError(f"recovery objective must be one of {', '.join(RECOVERY_OBJECTIVES)}")
        if not self.max_shares or not all(MIN_MAX_SHARE <= s <= 1.0 for s in self.max_shares):
            raise SettingsError(f"max shares must lie in [{MIN_MAX_SHARE}, 1] (1: a 1:1 permutation)")
        low, high = self.copy_noise
        if not 0.0 <= low <= high <= MAX_COPY_NOISE:
            raise SettingsError(f"copy noise range must lie in [0, {MAX_COPY_NOISE}], got {self.copy_noise}")
        if not self.lora_ranks or not all(1 <= r <= 1024 for r in self.lora_ranks):
            raise SettingsError("LoRA ranks must lie in [1, 1024]")
        bad_modes = [m for m in self.modes if m not in TUNING_MODES]
        if not self.modes or bad_modes:
            raise SettingsError(f"tuning modes must be among {', '.join(TUNING_MODES)}")
        self._check_substitution()
        self._check_mixing()
        object.__setattr__(self, "operators", tuple(op for op in CHAIN_ORDER if op in self.operators))

    def _check_substitution(self) -> None:
        if not self.substitute or any(not isinstance(on, bool) for on in self.substitute):
            raise SettingsError("substitute must list false and/or true")
        low, high = self.substitute_epsilon
        if not 0.0 < low <= high <= MAX_EPSILON:
            raise SettingsError(f"substitute epsilon range must lie in (0, {MAX_EPSILON:g}], got {low, high}")
        if not self.substitute_keep_top or not all(0 <= n <= MAX_KEEP_TOP for n in self.substitute_keep_top):
            raise SettingsError(f"substitute keep_top values must lie in [0, {MAX_KEEP_TOP}]")
        bad = [c for c in self.substitute_candidates if c not in CANDIDATES]
        if not self.substitute_candidates or bad:
            raise SettingsError(f"substitute candidates must be among {', '.join(CANDIDATES)}")
        if "kept" in self.substitute_candidates and 0 in self.substitute_keep_top:
            raise SettingsError(
                "substitute candidates kept draws among kept tokens: drop keep_top 0 from its choices"
            )
        if not self.substitute_k or not all(2 <= k <= MAX_CLUSTER for k in self.substitute_k):
            raise SettingsError(f"substitute k (tokens per cluster) must lie in [2, {MAX_CLUSTER}]")
        if not self.substitute_classes:
            raise SettingsError("substitute classes must list at least one choice, e.g. numbers+words")
        for choice in self.substitute_classes:
            SubstituteSettings(1.0, classes=classes_of(choice))  # each choice must name known classes

    def _check_mixing(self) -> None:
        if not self.mix or any(not isinstance(on, bool) for on in self.mix):
            raise SettingsError("mix must list false and/or true")
        if not self.mix_k or not all(2 <= k <= MAX_MIX_K for k in self.mix_k):
            raise SettingsError(f"mix k (rows mixed) must lie in [2, {MAX_MIX_K}]")
        low, high = self.mix_tau
        if not MIN_MIX_TAU <= low <= high <= MAX_MIX_TAU:
            raise SettingsError(
                f"mix tau range must lie in [{MIN_MIX_TAU:g}, {MAX_MIX_TAU:g}], got {low, high}"
            )
        low, high = self.mix_noise
        if not 0.0 <= low <= high <= MAX_MIX_NOISE:
            raise SettingsError(f"mix noise range must lie in [0, {MAX_MIX_NOISE:g}], got {low, high}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSpace:
        tuples = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        tuples.setdefault("recovery_steps", (0,))  # stored before recovery training was searched
        tuples.setdefault("max_shares", (1.0,))  # stored before homophones were searched
        tuples.setdefault("substitute", (False,))  # stored before substitution was searched
        tuples.setdefault("mix", (False,))  # stored before mixing was searched
        return cls(**tuples)

    # --- Optuna ------------------------------------------------------------------------------------
    def suggest(self, trial: optuna.Trial, flat: bool = False) -> TrialSettings:
        """Ask ``trial`` for one point of the space; ``flat``: every parameter in every trial (an
        operator's intensity and dimension even when it is off, unused then), which a GP sampler needs."""
        coverage = trial.suggest_float("coverage", *self.coverage)
        chain = []
        for op in self.operators:
            use = trial.suggest_categorical(f"use_{op}", [False, True])
            if use or flat:
                intensity = trial.suggest_float(f"{op}.intensity", *INTENSITY_RANGES[op])
                dimension = trial.suggest_float(f"{op}.dimension", *DIMENSION_RANGE)
                if use:
                    chain.append(OperatorSettings(op, intensity, dimension))
        homophones = HomophoneSettings()
        max_share = trial.suggest_categorical("homophones.max_share", list(self.max_shares))
        if max_share < 1.0 or (flat and min(self.max_shares) < 1.0):
            noise = trial.suggest_float("homophones.copy_noise", *self.copy_noise)
            if max_share < 1.0:
                homophones = HomophoneSettings(max_share, noise)
        substitute = self._suggest_substitution(trial, flat)
        mix = self._suggest_mixing(trial, flat)
        recovery = RecoveryBudget()
        recovery_steps = trial.suggest_categorical("recovery.steps", list(self.recovery_steps))
        if recovery_steps > 0:
            part = trial.suggest_categorical("recovery.part", list(self.recovery_parts))
            recovery = RecoveryBudget(
                recovery_steps, self.batch_size, part=part, objective=self.recovery_objective
            )
        steps = trial.suggest_categorical("tuning.steps", list(self.steps))
        learning_rate = trial.suggest_categorical("tuning.learning_rate", list(self.learning_rates))
        mode = trial.suggest_categorical("tuning.mode", list(self.modes))
        lora = {}
        if mode == "lora":
            rank = trial.suggest_categorical("tuning.lora_rank", list(self.lora_ranks))
            lora = {"lora_rank": rank, "lora_alpha": 2.0 * rank, "lora_targets": self.lora_targets}
        budget = TuningBudget(steps, self.batch_size, learning_rate, mode, **lora)
        shaking = ShakeSettings(coverage, tuple(chain), homophones, substitute, mix)
        return TrialSettings(shaking, budget, recovery)

    def _suggest_mixing(self, trial: optuna.Trial, flat: bool) -> MixSettings:
        """Mixing's parameters, asked only when it is on (every one with ``flat``)."""
        on = trial.suggest_categorical("use_mix", list(self.mix))
        if not (on or (flat and True in self.mix)):
            return MixSettings()
        k = trial.suggest_categorical("mix.k", list(self.mix_k))
        tau = trial.suggest_float("mix.tau", *self.mix_tau, log=True)
        noise = trial.suggest_float("mix.noise", *self.mix_noise)
        return MixSettings(k, tau, noise) if on else MixSettings()

    def _suggest_substitution(self, trial: optuna.Trial, flat: bool) -> SubstituteSettings:
        """Substitution's parameters, asked only when it is on (every one with ``flat``)."""
        on = trial.suggest_categorical("use_substitute", list(self.substitute))
        if not (on or (flat and True in self.substitute)):
            return SubstituteSettings()
        epsilon = trial.suggest_float("substitute.epsilon", *self.substitute_epsilon, log=True)
        keep_top = trial.suggest_categorical("substitute.keep_top", list(self.substitute_keep_top))
        candidates = trial.suggest_categorical("substitute.candidates", list(self.substitute_candidates))
        k = 20
        if candidates == "clusters" or (flat and "clusters" in self.substitute_candidates):
            k = trial.suggest_categorical("substitute.k", list(self.substitute_k))
        classes = classes_of(trial.suggest_categorical("substitute.classes", list(self.substitute_classes)))
        return SubstituteSettings(epsilon, candidates, k, keep_top, classes) if on else SubstituteSettings()

    def params_of(self, settings: TrialSettings) -> dict[str, Any]:
        """The parameters that make :meth:`suggest` return (the nearest point to) ``settings``.

        Used to enqueue known settings (warm start); values outside this space are moved to its edge or
        to the nearest choice, operators this space lacks are dropped.
        """
        params: dict[str, Any] = {"coverage": _clip(settings.shaking.coverage, self.coverage)}
        chosen = {}
        for op in settings.shaking.vertical:
            chosen.setdefault(op.op, op)
        for op in self.operators:
            params[f"use_{op}"] = op in chosen
            if op in chosen:
                params[f"{op}.intensity"] = _clip(chosen[op].intensity, INTENSITY_RANGES[op])
                params[f"{op}.dimension"] = _clip(chosen[op].dimension, DIMENSION_RANGE)
        homophones = settings.shaking.homophones
        params["homophones.max_share"] = min(
            self.max_shares, key=lambda s: abs(math.log(s) - math.log(homophones.max_share))
        )
        if params["homophones.max_share"] < 1.0:
            params["homophones.copy_noise"] = _clip(homophones.copy_noise, self.copy_noise)
        params.update(self._substitution_params(settings.shaking.substitute))
        params.update(self._mixing_params(settings.shaking.mix))
        recovery = settings.recovery
        params["recovery.steps"] = min(self.recovery_steps, key=lambda s: abs(s - recovery.steps))
        if params["recovery.steps"] > 0:
            part = recovery.part if recovery.part in self.recovery_parts else self.recovery_parts[0]
            params["recovery.part"] = part
        tuning = settings.tuning
        params["tuning.steps"] = min(self.steps, key=lambda s: abs(s - tuning.steps))
        params["tuning.learning_rate"] = min(
            self.learning_rates, key=lambda lr: abs(math.log(lr) - math.log(tuning.learning_rate))
        )
        params["tuning.mode"] = tuning.mode if tuning.mode in self.modes else self.modes[0]
        if params["tuning.mode"] == "lora":
            params["tuning.lora_rank"] = min(self.lora_ranks, key=lambda r: abs(r - tuning.lora_rank))
        return params

    def _substitution_params(self, substitute: SubstituteSettings) -> dict[str, Any]:
        """The parameters of :meth:`_suggest_substitution` nearest to ``substitute``."""
        on = substitute.enabled and True in self.substitute
        params: dict[str, Any] = {"use_substitute": on if on in self.substitute else self.substitute[0]}
        if not params["use_substitute"]:
            return params
        params["substitute.epsilon"] = _clip(substitute.epsilon, self.substitute_epsilon)
        params["substitute.keep_top"] = min(
            self.substitute_keep_top, key=lambda n: abs(math.log1p(n) - math.log1p(substitute.keep_top))
        )
        candidates = substitute.candidates
        params["substitute.candidates"] = (
            candidates if candidates in self.substitute_candidates else self.substitute_candidates[0]
        )
        if params["substitute.candidates"] == "clusters":
            params["substitute.k"] = min(self.substitute_k, key=lambda k: abs(k - substitute.k))
        named = "+".join(substitute.classes)
        fits = named in self.substitute_classes
        params["substitute.classes"] = named if fits else self.substitute_classes[0]
        return params

    def _mixing_params(self, mix: MixSettings) -> dict[str, Any]:
        """The parameters of :meth:`_suggest_mixing` nearest to ``mix``."""
        on = mix.enabled and True in self.mix
        params: dict[str, Any] = {"use_mix": on if on in self.mix else self.mix[0]}
        if params["use_mix"]:
            params["mix.k"] = min(self.mix_k, key=lambda k: abs(k - mix.k))
            params["mix.tau"] = _clip(mix.tau, self.mix_tau)
            params["mix.noise"] = _clip(mix.noise, self.mix_noise)
        return params


def classes_of(choice: str) -> tuple[str, ...]:
    """``numbers+words`` -> ("numbers", "words"): a choice of classes as the space names it."""
    return tuple(part for part in choice.split("+") if part)


def _clip(value: float, bounds: tuple[float, float]) -> float:
    return min(max(value, bounds[0]), bounds[1])
