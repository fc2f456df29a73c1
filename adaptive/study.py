"""The study: an Optuna multi-objective search over shaking settings, stored in the database.

Three objectives: maximise accuracy after private tuning, minimise the deterministic cost (GFLOP),
minimise leakage: by default the informed-adversary bound (the key's invertible operators assumed known),
or the attack suite's lower bound, as the study's ``leakage_measure`` says; scored by default on what users
must protect (``sensitive``: the worse of rare tokens and planted secrets) or on every token (``all``), as
its ``leakage_objective`` says. Every figure is recorded per trial.
User caps become Optuna constraints set by each trial. A trial
whose leakage (measured before any training) or cost already breaks a cap stops there: it is recorded
as a complete, infeasible trial whose accuracy is the worst possible, 0, and whose user attributes say
``stopped_early``, so the sampler learns from it and no front ever contains it.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial

from adaptive import screening
from adaptive.samplers import DEFAULT_SAMPLER, flat_space, make_sampler
from adaptive.space import SearchSpace
from adaptive.trials import SCREENED_ATTR, measured_feasible, objectives_of
from objectives.device import CPU
from objectives.leakage import (
    ALL,
    ATTACKS,
    BOUND,
    DEFAULT_LEAKAGE_MEASURE,
    DEFAULT_LEAKAGE_OBJECTIVE,
    SENSITIVE,
    check_measure,
    check_objective,
)
from objectives.task import TaskSpec
from objectives.trial import (
    PRIVATE,
    RECOVERED,
    Fidelity,
    TrialResult,
    TrialRunner,
    TrialSettings,
    check_accuracy_of,
)
from operators.errors import SettingsError, ShaketuneError

OBJECTIVES = ("accuracy", "cost_gflops", "leakage")
# the leakage cap a new study or target gets unless its owner sets one or opts out explicitly: a share of
# the scored occurrences under the study's leakage measure and objective (by default the informed-adversary
# bound on the worse of rare tokens and planted secrets)
DEFAULT_MAX_LEAKAGE = 0.05


def metric_names(measure: str, objective: str = ALL) -> list[str]:
    """The objectives as the dashboard shows them: the leakage named for the figure it is."""
    scored = "sensitive_" if check_objective(objective) == SENSITIVE else ""
    return ["accuracy", "cost_gflops", f"leakage_{scored}{check_measure(measure)}"]


DIRECTIONS = ("maximize", "minimize", "minimize")
CONFIG_ATTR = "shaketune"


class StudyError(ShaketuneError):
    """A study is missing, or was made for another model, task, fidelity, space or caps."""


@dataclass(frozen=True)
class Caps:
    """The owner's limits; ``None`` means no limit."""

    max_leakage: float | None = None
    min_accuracy: float | None = None
    max_cost: float | None = None  # GFLOP

    def __post_init__(self) -> None:
        for name in ("max_leakage", "min_accuracy"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise SettingsError(f"{name.replace('_', '-')} must be in [0, 1], got {value}")
        if self.max_cost is not None and not (math.isfinite(self.max_cost) and self.max_cost > 0):
            raise SettingsError(f"max-cost must be a positive number of GFLOP, got {self.max_cost}")

    def to_dict(self) -> dict[str, float | None]:
        return {"max_leakage": self.max_leakage, "min_accuracy": self.min_accuracy, "max_cost": self.max_cost}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Caps:
        data = data or {}
        return cls(data.get("max_leakage"), data.get("min_accuracy"), data.get("max_cost"))

    def violations(self, accuracy: float, cost: float, leakage: float) -> dict[str, float]:
        """Constraint values, one per cap set: > 0 means the cap is broken by that much."""
        out = {}
        if self.max_leakage is not None:
            out["leakage"] = leakage - self.max_leakage
        if self.min_accuracy is not None:
            out["accuracy"] = self.min_accuracy - accuracy
        if self.max_cost is not None:
            out["cost"] = cost - self.max_cost
        return out

    def allows(self, accuracy: float, cost: float, leakage: float) -> bool:
        return all(v <= 0 for v in self.violations(accuracy, cost, leakage).values())

    def tighter(self, other: Caps) -> Caps:
        """The stricter of both caps on every objective."""

        def pick(a: float | None, b: float | None, strict: Callable[[float, float], float]) -> float | None:
            return b if a is None else a if b is None else strict(a, b)

        return Caps(
            pick(self.max_leakage, other.max_leakage, min),
            pick(self.min_accuracy, other.min_accuracy, max),
            pick(self.max_cost, other.max_cost, min),
        )


@dataclass(frozen=True)
class StudyConfig:
    """What a study measures; stored with it so that resumed runs and other workers measure the same."""

    model: str
    task: TaskSpec
    fidelity: Fidelity = field(default_factory=Fidelity)
    space: SearchSpace = field(default_factory=SearchSpace)
    caps: Caps = field(default_factory=Caps)
    target: str = ""
    seed: int = 0
    leakage_measure: str = DEFAULT_LEAKAGE_MEASURE  # which figure the leakage objective and caps use
    strategy: str = screening.DEFAULT_STRATEGY  # how trials spend tuning (adaptive/screening.py)
    leakage_objective: str = DEFAULT_LEAKAGE_OBJECTIVE  # which occurrences it scores: sensitive or all
    accuracy_of: str = PRIVATE  # the accuracy maximised: private inference or the recovered model's

    def __post_init__(self) -> None:
        check_measure(self.leakage_measure)
        check_objective(self.leakage_objective)
        check_accuracy_of(self.accuracy_of)
        screening.check_strategy(self.strategy)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "task": self.task.to_dict(),
            "task_fingerprint": self.task.fingerprint(),
            "fidelity": self.fidelity.to_dict(),
            "space": self.space.to_dict(),
            "caps": self.caps.to_dict(),
            "target": self.target,
            "seed": self.seed,
            "leakage_measure": self.leakage_measure,
            "strategy": self.strategy,
            "leakage_objective": self.leakage_objective,
            "accuracy_of": self.accuracy_of,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudyConfig:
        return cls(
            model=data["model"],
            task=TaskSpec.from_dict(data["task"]),
            fidelity=Fidelity(**data["fidelity"]),
            space=SearchSpace.from_dict(data["space"]),
            caps=Caps.from_dict(data["caps"]),
            target=data.get("target", ""),
            seed=int(data.get("seed", 0)),
            leakage_measure=data.get("leakage_measure", ATTACKS),  # what studies measured before the bound
            strategy=data.get("strategy", screening.PLAIN),  # what studies did before screening
            leakage_objective=data.get("leakage_objective", ALL),  # what studies scored before rare tokens
            accuracy_of=data.get("accuracy_of", PRIVATE),
        )

    def differences(self, other: StudyConfig) -> list[str]:
        """What differs between two configs, among what changes the measurements."""
        mine, theirs = self.to_dict(), other.to_dict()
        keys = (
            "model",
            "task_fingerprint",
            "fidelity",
            "space",
            "caps",
            "leakage_measure",
            "leakage_objective",
            "accuracy_of",
            "strategy",
        )
        return [key for key in keys if mine[key] != theirs[key]]


def study_exists(name: str, storage: Any) -> bool:
    return name in optuna.get_all_study_names(storage)


def load_study(name: str, storage: Any, sampler: str | None = None, seed: int | None = None) -> optuna.Study:
    """An existing study (a clear error if there is none)."""
    if not study_exists(name, storage):
        known = optuna.get_all_study_names(storage)
        hint = f"; studies here: {', '.join(known)}" if known else "; this storage holds no studies"
        raise StudyError(f"no study named {name!r}{hint}")
    return optuna.load_study(
        study_name=name, storage=storage, sampler=make_sampler(sampler or DEFAULT_SAMPLER, seed)
    )


def study_config(study: optuna.Study) -> StudyConfig:
    data = study.user_attrs.get(CONFIG_ATTR)
    if not data:
        raise StudyError(f"study {study.study_name!r} was not made by shaketune")
    return StudyConfig.from_dict(data)


def open_study(
    name: str,
    storage: Any,
    config: StudyConfig,
    sampler: str = DEFAULT_SAMPLER,
    sampler_seed: int | None = None,
) -> optuna.Study:
    """Create the study, or resume it if it exists and measures the same thing.

    The sampler is seeded by ``sampler_seed`` (default: the config's seed), and a resumed run offsets it
    by the trials so far so that it does not replay the first run's random draws.
    """
    seed = config.seed if sampler_seed is None else sampler_seed
    if study_exists(name, storage):
        study = load_study(name, storage, sampler, seed)
        study.sampler = make_sampler(sampler, seed + 7919 * len(study.get_trials(deepcopy=False)))
        stored = study_config(study)
        changed = stored.differences(config)
        if changed:
            raise StudyError(
                f"study {name!r} was made with another {', '.join(changed)}; resume it with the same "
                "options or start a new study"
            )
        return study
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        directions=list(DIRECTIONS),
        sampler=make_sampler(sampler, seed),
    )
    with warnings.catch_warnings():  # set_metric_names is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(metric_names(config.leakage_measure, config.leakage_objective))
    study.set_user_attr(CONFIG_ATTR, config.to_dict())
    return study


def record(
    trial: optuna.Trial,
    result: TrialResult,
    caps: Caps,
    measure: str = DEFAULT_LEAKAGE_MEASURE,
    objective: str = ALL,
    accuracy_of: str = PRIVATE,
) -> tuple[float, float, float]:
    """Store every figure of ``result`` on the trial, set the cap constraints, return the objectives
    (accuracy as ``accuracy_of`` says, leakage as ``measure`` and ``objective`` say)."""
    for name, value in result.to_dict().items():
        trial.set_user_attr(name, value)
    trial.set_user_attr("leakage_measure", measure)
    trial.set_user_attr("leakage_objective", objective)
    trial.set_user_attr("accuracy_of", accuracy_of)
    accuracy = result.accuracy_of(accuracy_of)
    if accuracy is None:  # stopped at a rung: its last score; before tuning: the worst possible
        accuracy = list(result.accuracy_by_steps.values())[-1] if result.accuracy_by_steps else 0.0
    values = (accuracy, result.cost_gflops, result.leakage(measure, objective))
    for name, violation in caps.violations(*values).items():
        trial.set_constraint(name, violation)
    return values


def shaking_key(settings: TrialSettings) -> str:
    """What the upload, hence the leakage, depends on: the shaking and the recovery training, not the
    tuning budget."""
    recovery = settings.recovery.to_dict() if settings.recovery.enabled else None
    return json.dumps({"shaking": settings.shaking.to_dict(), "recovery": recovery}, sort_keys=True)


def measurement_seed(seed: int, settings: TrialSettings) -> int:
    """The trial key's seed: a function of the study seed and the shaking only (:func:`shaking_key`), so
    the same shaking measured again (a warm start, another worker, another tuning budget) makes the same
    key and gives exactly the same leakage."""
    digest = hashlib.sha256(f"{seed}|{shaking_key(settings)}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def objective(
    config: StudyConfig, runner: TrialRunner, progress: Callable[[str, int, int], None] | None = None
) -> Callable[[optuna.Trial], tuple[float, float, float]]:
    """The function Optuna calls per trial: suggest settings, screen them by cost and leakage (the study's
    strategy, :mod:`adaptive.screening`), tune what passes, record the figures."""
    caps, measure, strategy = config.caps, config.leakage_measure, config.strategy
    scored = config.leakage_objective

    def run(trial: optuna.Trial) -> tuple[float, float, float]:
        settings = config.space.suggest(trial, flat=flat_space(trial.study.sampler))
        cost = cost_in_gflops(runner, config)(settings)
        shaking = shaking_key(settings)
        trial.set_user_attr(screening.SHAKING_ATTR, shaking)
        reused = screening.known_leakage(trial.study, shaking) if strategy != screening.PLAIN else None
        known: dict[str, float] = {}

        def stop(leakage: Any) -> bool:
            figure = known["leakage"] = leakage.figure(measure, scored)
            if caps.max_leakage is not None and figure > caps.max_leakage:
                trial.set_user_attr(SCREENED_ATTR, "leakage over the cap")
                return True
            if caps.max_cost is not None and cost > caps.max_cost:
                trial.set_user_attr(SCREENED_ATTR, "cost over the cap")
                return True
            if strategy == screening.PLAIN:
                return False

            def optimistic() -> float:
                return runner.plaintext_accuracy(settings.tuning, config.seed)

            better = screening.dominating_trial(trial.study, cost, figure, optimistic)
            if better is not None:
                trial.set_user_attr(
                    SCREENED_ATTR,
                    f"dominated by trial {better.number} (more accurate than plaintext tuning at this "
                    f"budget, {optimistic():.4f}, at no more cost and leakage)",
                )
                return True
            return False

        rungs = None
        if strategy == screening.HALVING:
            leakage_now = lambda: known["leakage"]  # noqa: E731 - known once the attacks ran
            rungs = screening.halving_rungs(trial.study, trial, settings.tuning.steps, cost, leakage_now)

        key_seed = measurement_seed(config.seed, settings)
        result = runner.run(
            settings,
            key_seed=key_seed,
            tuning_seed=config.seed,
            stop=stop,
            progress=progress,
            rungs=rungs,
            known_leakage=reused,
        )
        return record(trial, result, caps, measure, scored, config.accuracy_of)

    return run


@dataclass(frozen=True)
class LeakageFigures:
    """A trial's leakage as stated: the figure its study optimised, and every figure named for what it
    is: on every token and, where measured, on rare tokens and planted secrets (trials measured before
    the bound or before those subsets existed have None there)."""

    measure: str
    bound: float | None  # informed-adversary bound, every token
    attacks: float  # the suite's best attack run: a lower bound, every token
    strongest_bound: str
    strongest_attack: str
    objective: str = ALL
    rare: float | None = None  # the bound on rare tokens
    canary: float | None = None  # the bound's attacker on planted secrets
    rare_attacks: float | None = None
    canary_attacks: float | None = None
    strongest_rare: str = ""
    strongest_canary: str = ""
    unchanged: float | None = None  # share of private tokens uploaded as written (the permutation aside)
    floor: float | None = None  # always naming the most frequent public token

    @property
    def sensitive_known(self) -> bool:
        return self.rare is not None or self.canary is not None

    @property
    def value(self) -> float:
        """The figure the study optimised and capped."""
        bound = self.measure == BOUND and self.bound is not None
        if self.objective == SENSITIVE and self.sensitive_known:
            pair = (self.rare, self.canary) if bound else (self.rare_attacks, self.canary_attacks)
            known = [v for v in pair if v is not None]
            if known:
                return max(known)
        return self.bound if bound else self.attacks

    @property
    def strongest(self) -> str:
        """The attack behind :attr:`value`."""
        if self.objective == SENSITIVE and self.sensitive_known:
            return (
                self.strongest_canary if (self.canary or 0.0) >= (self.rare or 0.0) else self.strongest_rare
            )
        return (
            self.strongest_bound
            if self.measure == "bound" and self.bound is not None
            else self.strongest_attack
        )

    def describe(self) -> str:
        """Every figure in a line or two, the sensitive ones first where measured; the all-token figure
        always beside them, in words."""
        suite = f"best attack run {self.attacks:.2%} ({_short(self.strongest_attack)})"
        if self.bound is None:
            return f"{suite}; no informed-adversary bound measured (a lower bound only)"
        every = f"bound {self.bound:.2%} ({_short(self.strongest_bound)}); {suite}"
        if not self.sensitive_known:
            return every
        parts = []
        if self.rare is not None:
            parts.append(f"rare tokens {self.rare:.2%} ({_short(self.strongest_rare)})")
        if self.canary is not None:
            parts.append(f"planted secrets {self.canary:.2%} ({_short(self.strongest_canary)})")
        text = f"bound on {', '.join(parts)}; all tokens: {every}"
        if self.unchanged is not None and self.unchanged >= 0.005:
            text += f"; the common words, {self.unchanged:.0%} of tokens, are uploaded unchanged and readable"
        if self.floor is not None:
            text += f" (always naming the most common token scores {self.floor:.1%})"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "leakage_measure": self.measure,
            "leakage_objective": self.objective,
            "leakage_bound": self.bound,
            "leakage_attacks": self.attacks,
            "strongest_bound_attack": self.strongest_bound,
            "strongest_attack": self.strongest_attack,
            "leakage_bound_rare": self.rare,
            "canary_recovery": self.canary,
            "leakage_attacks_rare": self.rare_attacks,
            "canary_recovery_attacks": self.canary_attacks,
            "strongest_rare_attack": self.strongest_rare,
            "strongest_canary_attack": self.strongest_canary,
            "tokens_unchanged": self.unchanged,
            "blind_floor": self.floor,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], default_attacks: float = 0.0) -> LeakageFigures:
        """The figures :meth:`to_dict` wrote (or a trial's attributes); absent ones as recorded before."""
        attacks = data.get("leakage_attacks", data.get("leakage"))
        return cls(
            data.get("leakage_measure") or ATTACKS,
            data.get("leakage_bound"),
            float(default_attacks if attacks is None else attacks),
            str(data.get("strongest_bound_attack") or ""),
            str(data.get("strongest_attack") or ""),
            data.get("leakage_objective") or ALL,
            data.get("leakage_bound_rare"),
            data.get("canary_recovery"),
            data.get("leakage_attacks_rare"),
            data.get("canary_recovery_attacks"),
            str(data.get("strongest_rare_attack") or ""),
            str(data.get("strongest_canary_attack") or ""),
            data.get("tokens_unchanged"),
            data.get("blind_floor"),
        )


def _short(attack: str) -> str:
    """``shaken/context`` -> ``context``; other stages stay named."""
    return attack.removeprefix("shaken/")


def leakage_figures(trial: FrozenTrial) -> LeakageFigures:
    """Every leakage figure of a measured trial, and which one its study optimised."""
    return LeakageFigures.from_dict(trial.user_attrs, default_attacks=objectives_of(trial)[2])


def feasible_front(study: optuna.Study, caps: Caps | None = None) -> list[FrozenTrial]:
    """The Pareto front among measured trials that satisfy the study's constraints and ``caps``."""
    caps = caps or Caps()
    return pareto_front([t for t in measured_feasible(study) if caps.allows(*objectives_of(t))])


def pareto_front(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Trials no other trial dominates (higher-or-equal accuracy, lower-or-equal cost and leakage)."""

    def key(t: FrozenTrial) -> tuple[float, float, float]:
        accuracy, cost, leakage = objectives_of(t)
        return (-accuracy, cost, leakage)

    def dominates(a: tuple, b: tuple) -> bool:
        return all(x <= y for x, y in zip(a, b, strict=True)) and a != b

    keyed = [(key(t), t) for t in sorted(trials, key=lambda t: t.number)]
    front, seen = [], set()
    for k, t in keyed:
        if k not in seen and not any(dominates(other, k) for other, _ in keyed):
            front.append(t)
            seen.add(k)  # of trials with identical objectives, the earliest stands for all
    return sorted(front, key=lambda t: (-objectives_of(t)[0], objectives_of(t)[2], t.number))


def trial_settings(trial: FrozenTrial) -> TrialSettings:
    return TrialSettings.from_dict(trial.user_attrs["settings"])


def enqueue_settings(
    study: optuna.Study, settings: list[TrialSettings], space: SearchSpace, source: str
) -> int:
    """Enqueue known settings (moved into ``space`` where they lie outside it) to be measured first."""
    for index, item in enumerate(settings):
        study.enqueue_trial(
            space.params_of(item), user_attrs={"enqueued": f"{source}#{index}"}, skip_if_exists=True
        )
    return len(settings)


def load_settings_list(path: str) -> list[TrialSettings]:
    """A JSON file holding one settings object or a list of them (the form ``select`` writes)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"settings file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc.__class__.__name__}") from None
    items = data if isinstance(data, list) else [data]
    try:
        return [TrialSettings.from_dict(item) for item in items]
    except SettingsError as exc:
        raise SettingsError(f"{path}: {exc}") from None


class StoredReferences:
    """Plaintext references kept in the project's database, shared by every worker and resumed run."""

    def __init__(self, repository: Any) -> None:
        self._repository = repository

    def get(self, key: str) -> float | None:
        return self._repository.plaintext_reference(key)

    def put(self, key: str, accuracy: float) -> None:
        self._repository.store_plaintext_reference(key, accuracy)


def cost_in_gflops(runner: TrialRunner, config: StudyConfig) -> Callable[[TrialSettings], float]:
    """A setting's deterministic cost in GFLOP, as a study's trials count it."""
    return lambda settings: sum(runner.flops(settings, config.seed).values()) / 1e9


def runner_for(config: StudyConfig, references: Any = None, device: torch.device = CPU) -> TrialRunner:
    """The trial runner of a study's config, running on ``device`` (recorded in each trial's attributes);
    a study that maximises the recovered model's accuracy measures it in every trial."""
    fidelity = config.fidelity
    if config.accuracy_of == RECOVERED and not fidelity.check_recovered:
        fidelity = replace(fidelity, check_recovered=True)
    return TrialRunner(config.task, config.model, fidelity, references, device)
