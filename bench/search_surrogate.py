"""A surrogate of the bench objective, fitted on the measured design (bench/data/search-design.jsonl).

One random forest per figure (private accuracy at the full budget and at the first rung, the leakage
bound from the shaking alone, and the seconds of the attacks, the tuning and the rest), plus the
measured replicate noise. :class:`SurrogateRunner` answers like ``objectives.trial.TrialRunner``, so the
product's own objective, screening and successive halving run on it unchanged, and keeps a clock of the
seconds the real trials would have taken.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr
from sklearn.ensemble import RandomForestRegressor

from adaptive.space import CHAIN_ORDER, DIMENSION_RANGE, INTENSITY_RANGES
from objectives.attacks.suite import AttackScore, LeakageReport
from objectives.leakage import StagedLeakage, StageLeakage
from objectives.rungs import Rungs
from objectives.trial import TrialResult, TrialRunner, TrialSettings
from objectives.tuning import TuningBudget
from operators.settings import ShakeSettings

SHARES = (1.0, 0.005, 0.002)


def shaking_features(settings: TrialSettings) -> list[float]:
    """What the upload depends on, as numbers: coverage, each operator (on, intensity, dimension),
    the flattening and its copy noise."""
    shaking = settings.shaking
    chosen = {op.op: op for op in shaking.vertical}
    row = [shaking.coverage]
    for op in CHAIN_ORDER:
        low, high = INTENSITY_RANGES[op]
        if op in chosen:
            row += [
                1.0,
                (chosen[op].intensity - low) / (high - low),
                chosen[op].dimension / DIMENSION_RANGE[1],
            ]
        else:
            row += [0.0, 0.0, 0.0]
    share = shaking.homophones.max_share
    row += [float(share == s) for s in SHARES] + [shaking.homophones.copy_noise if share < 1.0 else 0.0]
    return row


def features(settings: TrialSettings) -> list[float]:
    """The shaking's features and the tuning budget's (log steps, log learning rate, mode)."""
    tuning = settings.tuning
    return [
        *shaking_features(settings),
        math.log2(tuning.steps),
        math.log10(tuning.learning_rate),
        float(tuning.mode == "full"),
    ]


def load_records(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of ``path``: the measured design, or the real-run log."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def rung_accuracy(record: dict[str, Any]) -> float:
    """The accuracy at a third of the steps (the rung successive halving scores)."""
    steps = record["settings"]["tuning"]["steps"]
    return record["accuracy_by_steps"][str(-(-steps // 3))]


FIGURES: dict[str, tuple[Callable[[dict], float], bool]] = {  # name: (value, of the shaking alone)
    "accuracy": (lambda r: r["accuracy"], False),
    "rung_accuracy": (rung_accuracy, False),
    "leakage": (lambda r: r["leakage_bound"], True),
    "attack_seconds": (lambda r: r["seconds"].get("attacks", 0.0) + r["seconds"].get("shaking", 0.0), True),
    "tuning_seconds": (lambda r: r["seconds"]["tuning"], False),
    "inference_seconds": (lambda r: r["seconds"]["inference"], False),
}


class Forest:
    """A fitted random forest's trees as padded arrays, walked for every tree at once: the same answers as
    ``RandomForestRegressor.predict`` (inputs compared in float32, as sklearn's trees do) at a fraction of
    its per-call cost, which dominated the benchmark (a few hundred single-row calls per run)."""

    def __init__(self, forest: RandomForestRegressor) -> None:
        trees = [estimator.tree_ for estimator in forest.estimators_]
        width = max(tree.node_count for tree in trees)
        shape = (len(trees), width)
        self.left, self.right = np.zeros(shape, dtype=np.intp), np.zeros(shape, dtype=np.intp)
        self.feature, self.threshold = np.zeros(shape, dtype=np.intp), np.full(shape, np.inf)
        self.value = np.zeros(shape)
        for t, tree in enumerate(trees):
            n, leaf = tree.node_count, tree.children_left == -1
            nodes = np.arange(n)
            self.left[t, :n] = np.where(leaf, nodes, tree.children_left)  # a leaf leads to itself
            self.right[t, :n] = np.where(leaf, nodes, tree.children_right)
            self.feature[t, :n] = np.where(leaf, 0, tree.feature)
            self.threshold[t, :n] = np.where(leaf, np.inf, tree.threshold)
            self.value[t, :n] = tree.value[:, 0, 0]
        self.depth = max(tree.max_depth for tree in trees)
        self.trees = np.arange(len(trees))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The forest's mean prediction for each row of ``x``."""
        x = np.asarray(x, dtype=np.float32).astype(np.float64)
        rows = np.arange(len(x))[:, None]
        node = np.zeros((len(x), len(self.trees)), dtype=np.intp)
        for _ in range(self.depth):
            column = self.feature[self.trees, node]
            go_left = x[rows, column] <= self.threshold[self.trees, node]
            node = np.where(go_left, self.left[self.trees, node], self.right[self.trees, node])
        return self.value[self.trees, node].mean(axis=1)


@dataclass
class Surrogate:
    """Forests per figure, the replicate noise of accuracy and leakage, and plaintext references."""

    models: dict[str, Forest]
    noise: dict[str, float]
    plaintext: dict[str, float]  # tuning budget (JSON) -> plaintext accuracy, as measured

    @classmethod
    def fit(cls, records: list[dict[str, Any]]) -> Surrogate:
        design = [r for r in records if r["role"] == "design"]
        settings = [TrialSettings.from_dict(r["settings"]) for r in design]
        models = {}
        for name, (value, shaking_only) in FIGURES.items():
            x = [shaking_features(s) if shaking_only else features(s) for s in settings]
            forest = RandomForestRegressor(n_estimators=300, min_samples_leaf=2, random_state=0)
            forest.fit(np.array(x), np.array([value(r) for r in design]))
            models[name] = Forest(forest)
            # the walk must answer as sklearn does (float rounding aside), or the benchmark measures nothing
            np.testing.assert_allclose(
                models[name].predict(np.array(x)), forest.predict(np.array(x)), atol=1e-9
            )
        return cls(models, replicate_noise(records), plaintext_table(design))

    def predict(self, name: str, settings: TrialSettings) -> float:
        shaking_only = FIGURES[name][1]
        row = shaking_features(settings) if shaking_only else features(settings)
        return float(self.models[name].predict(np.array([row]))[0])

    def check(self, records: list[dict[str, Any]]) -> dict[str, float]:
        """Spearman rank correlation of predictions with fresh measurements of held-out settings."""
        held = [r for r in records if r["role"] == "heldout"]
        out = {}
        for name, (value, _) in FIGURES.items():
            predicted = [self.predict(name, TrialSettings.from_dict(r["settings"])) for r in held]
            out[name] = (
                float(spearmanr(predicted, [value(r) for r in held]).statistic) if len(held) > 2 else math.nan
            )
        return out


def replicate_noise(records: list[dict[str, Any]]) -> dict[str, float]:
    """The standard deviation of one measurement, from design points measured again with another seed
    (the spread of a difference of two is sqrt(2) times that of one)."""
    design = {r["index"]: r for r in records if r["role"] == "design"}
    pairs = [(design[r["index"]], r) for r in records if r["role"] == "replicate" and r["index"] in design]
    out = {}
    for name in ("accuracy", "rung_accuracy", "leakage"):
        value = FIGURES[name][0]
        diffs = [value(a) - value(b) for a, b in pairs]
        out[name] = float(np.std(diffs, ddof=1) / math.sqrt(2)) if len(diffs) > 1 else 0.0
    return out


def plaintext_table(design: list[dict[str, Any]]) -> dict[str, float]:
    return {budget_key(TuningBudget(**r["settings"]["tuning"])): r["plaintext_accuracy"] for r in design}


def budget_key(tuning: TuningBudget) -> str:
    return json.dumps(tuning.to_dict(), sort_keys=True)


def _normal(*parts: Any) -> float:
    """A standard normal draw fixed by ``parts`` (the same key gives the same leakage noise)."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()
    return float(np.random.default_rng(int.from_bytes(digest[:8], "big")).standard_normal())


def _stage(bound: float) -> StagedLeakage:
    report = LeakageReport({"surrogate": AttackScore(bound, 0.0)}, 1)
    return StagedLeakage({"shaken": StageLeakage(report, report)})


class SurrogateRunner:
    """Answers like a TrialRunner from the surrogate (exact FLOPs from the real runner) and counts the
    seconds a real run would have spent: attacks (unless the leakage is reused), tuning up to where it
    stopped, each scoring, and each plaintext reference the first time its budget is used."""

    def __init__(self, surrogate: Surrogate, real: TrialRunner, seed: int) -> None:
        self.surrogate, self.real, self.seed = surrogate, real, seed
        self.clock = 0.0
        self._references: set[str] = set()
        self.trials_tuned = 0

    def flops(self, settings: TrialSettings, seed: int) -> dict[str, float]:
        return self.real.flops(settings, seed)

    def plaintext_accuracy(self, tuning: TuningBudget, seed: int) -> float:
        key = budget_key(tuning)
        if key not in self._references:  # measured once per run: a horizontal-only trial's tuning
            self._references.add(key)
            plain = TrialSettings(ShakeSettings(coverage=1.0), tuning)
            self.clock += self.surrogate.predict("tuning_seconds", plain)
            self.clock += self.surrogate.predict("inference_seconds", plain)
        return self.surrogate.plaintext[key]

    def run(
        self,
        settings: TrialSettings,
        key_seed: int = 0,
        tuning_seed: int = 0,
        stop: Callable[[StagedLeakage], bool] | None = None,
        progress: Any = None,
        rungs: Rungs | None = None,
        known_leakage: StagedLeakage | None = None,
    ) -> TrialResult:
        s, noise = self.surrogate, self.surrogate.noise
        flops = self.flops(settings, tuning_seed)
        if known_leakage is None:
            self.clock += s.predict("attack_seconds", settings)
            bound = s.predict("leakage", settings) + noise["leakage"] * _normal("leakage", key_seed)
            leakage = _stage(min(max(bound, 0.0), 1.0))
        else:
            leakage = known_leakage

        def result(**measured: Any) -> TrialResult:
            fingerprint = f"surrogate-{key_seed}"
            reused = known_leakage is not None
            return TrialResult.of(
                settings,
                fingerprint,
                leakage,
                flops,
                seconds={},
                peak_memory_mb=0.0,
                leakage_reused=reused,
                **measured,
            )

        if stop is not None and stop(leakage):
            return result(stopped_early=True)
        self.trials_tuned += 1
        z = _normal("accuracy", key_seed, settings.tuning.to_dict())
        tuning_seconds = s.predict("tuning_seconds", settings)
        scoring = s.predict("inference_seconds", settings)
        by_steps: dict[str, float] = {}
        done = 0
        for point in rungs.steps if rungs is not None else ():
            self.clock += tuning_seconds * (point - done) / settings.tuning.steps + scoring
            done = point
            accuracy = _clip(s.predict("rung_accuracy", settings) + noise["rung_accuracy"] * z)
            by_steps[str(point)] = accuracy
            if not rungs.promote(point, accuracy):
                return result(stopped_early=True, accuracy_by_steps=by_steps, stopped_at_steps=point)
        self.clock += tuning_seconds * (settings.tuning.steps - done) / settings.tuning.steps + scoring
        accuracy = _clip(s.predict("accuracy", settings) + noise["accuracy"] * z)
        if rungs is not None:
            by_steps[str(settings.tuning.steps)] = accuracy
        plaintext = self.plaintext_accuracy(settings.tuning, tuning_seed)
        return result(accuracy=accuracy, accuracy_by_steps=by_steps, plaintext_accuracy=plaintext)


def _clip(value: float) -> float:
    return min(max(value, 0.0), 1.0)
