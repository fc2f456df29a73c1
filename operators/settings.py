"""Shaking settings: the typed, validated object the search fills and key generation consumes.

A settings file is JSON::

    {"coverage": 1.0,
     "vertical": [{"op": "tilt", "intensity": 1.0, "dimension": 0.5},
                  {"op": "gaussian", "intensity": 0.5, "dimension": 1.0}]}

``coverage`` is the share of the (non-special) vocabulary the secret permutation moves: the horizontal
part of the horizontal/vertical mix. ``vertical`` is the operator chain, applied in order. An optional
``"homophones": {"max_share": 0.002, "copy_noise": 1.0}`` makes the horizontal map homophonic (see
:mod:`operators.homophonic`); without it the map is a 1:1 permutation. An optional
``"substitute": {"epsilon": 4, "candidates": "vocabulary", "keep_top": 300, "classes": ["numbers"]}``
replaces each occurrence of a token, before the permutation, by one drawn from its candidate group (see
:mod:`operators.substitution`). An optional ``"mix": {"k": 10, "tau": 0.05, "noise": 0.5}`` replaces each
embedding row, before the vertical chain, by a softmax-weighted mix of its ``k`` nearest rows plus noise
(see :mod:`operators.mixing`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from operators.errors import SettingsError
from operators.vertical import OPERATORS

SETTINGS_VERSION = 1
MAX_CHAIN_LENGTH = 8
MIN_MAX_SHARE = 1e-4  # below this the embedding would grow by more than ~10,000 rows
MAX_COPY_NOISE = 10.0
CANDIDATES = (
    "vocabulary",
    "clusters",
    "kept",
    "mask",
)  # substitution's candidate groups (operators/substitution.py)
SUBSTITUTED_CLASSES = ("numbers", "pieces", "words")  # substituted whatever their frequency
MAX_EPSILON = 1e6  # far beyond any useful privacy; large values make substitution the identity
MAX_CLUSTER = 5000
MAX_KEEP_TOP = 100_000
MAX_MIX_K = 200  # rows a mixed row is made of
MIN_MIX_TAU, MAX_MIX_TAU = 1e-4, 10.0  # softmax temperature over cosine similarities
MAX_MIX_NOISE = 10.0  # x the embedding's scale, per entry


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SettingsError(f"{what} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise SettingsError(f"{what} must be finite, got {value}")
    return float(value)


def _reject_unknown(data: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise SettingsError(f"unknown field(s) in {where}: {', '.join(unknown)}")


@dataclass(frozen=True)
class OperatorSettings:
    """One vertical operator: which, how strong (relative to embedding scale), on what share of dims."""

    op: str
    intensity: float
    dimension: float = 1.0

    def __post_init__(self) -> None:
        if self.op not in OPERATORS:
            raise SettingsError(f"unknown vertical operator {self.op!r}; choose from {', '.join(OPERATORS)}")
        intensity = _number(self.intensity, f"{self.op} intensity")
        limit = OPERATORS[self.op].max_intensity
        if not 0.0 <= intensity <= limit:
            raise SettingsError(f"{self.op} intensity must be in [0, {limit}], got {intensity}")
        dimension = _number(self.dimension, f"{self.op} dimension")
        if not 0.0 < dimension <= 1.0:
            raise SettingsError(
                f"{self.op} dimension is the share of embedding dimensions touched and must be in "
                f"(0, 1], got {dimension}"
            )
        object.__setattr__(self, "intensity", intensity)
        object.__setattr__(self, "dimension", dimension)

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "intensity": self.intensity, "dimension": self.dimension}

    @classmethod
    def from_dict(cls, data: Any, where: str = "operator") -> OperatorSettings:
        if not isinstance(data, dict):
            raise SettingsError(f"{where} must be an object with op, intensity, dimension")
        _reject_unknown(data, {"op", "intensity", "dimension"}, where)
        if "op" not in data or "intensity" not in data:
            raise SettingsError(f"{where} needs at least 'op' and 'intensity'")
        if not isinstance(data["op"], str):
            raise SettingsError(f"{where} op must be a string")
        return cls(data["op"], data["intensity"], data.get("dimension", 1.0))


@dataclass(frozen=True)
class HomophoneSettings:
    """Frequency flattening: no shaken id should carry more than ``max_share`` of public text (1.0: off,
    a 1:1 permutation); ``copy_noise`` is gaussian noise (x embedding scale) drawn for every row of a
    token with several copies, so its copies are not identical rows."""

    max_share: float = 1.0
    copy_noise: float = 0.0

    def __post_init__(self) -> None:
        share = _number(self.max_share, "homophones max_share")
        if not MIN_MAX_SHARE <= share <= 1.0:
            raise SettingsError(f"homophones max_share must be in [{MIN_MAX_SHARE}, 1], got {share}")
        noise = _number(self.copy_noise, "homophones copy_noise")
        if not 0.0 <= noise <= MAX_COPY_NOISE:
            raise SettingsError(f"homophones copy_noise must be in [0, {MAX_COPY_NOISE}], got {noise}")
        if noise > 0 and share >= 1.0:
            raise SettingsError("homophones copy_noise needs max_share < 1 (there are no copies to noise)")
        object.__setattr__(self, "max_share", share)
        object.__setattr__(self, "copy_noise", noise)

    @property
    def enabled(self) -> bool:
        return self.max_share < 1.0

    def to_dict(self) -> dict[str, float]:
        return {"max_share": self.max_share, "copy_noise": self.copy_noise}

    @classmethod
    def from_dict(cls, data: Any) -> HomophoneSettings:
        if not isinstance(data, dict):
            raise SettingsError("homophones must be an object with max_share and copy_noise")
        _reject_unknown(data, {"max_share", "copy_noise"}, "homophones")
        return cls(data.get("max_share", 1.0), data.get("copy_noise", 0.0))


def _integer(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingsError(f"{what} must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise SettingsError(f"{what} must be in [{low}, {high}], got {value}")
    return int(value)


@dataclass(frozen=True)
class SubstituteSettings:
    """Per-occurrence substitution before the permutation (:mod:`operators.substitution`): ``epsilon`` per
    occurrence among the inputs of a candidate group (infinite: off); ``candidates`` ``vocabulary`` (one
    group per kind of token, SanText), ``clusters`` (disjoint clusters of ``k`` nearest tokens, CusText)
    , ``kept`` (drawn among the kept tokens of its kind: a common word near it) or ``mask`` (the unknown
    token for all: epsilon is then only the switch that turns it on); ``keep_top`` the most
    frequent public tokens pass unchanged (0: none), except those of the ``classes`` substituted whatever
    their frequency (``numbers``: any token holding a digit; ``pieces``: word continuations; ``words``:
    every token of a word that holds a substituted one)."""

    epsilon: float = math.inf
    candidates: str = "vocabulary"
    k: int = 20
    keep_top: int = 0
    classes: tuple[str, ...] = ("numbers",)

    def __post_init__(self) -> None:
        if self.epsilon != math.inf:
            epsilon = _number(self.epsilon, "substitute epsilon")
            if not 0.0 < epsilon <= MAX_EPSILON:
                raise SettingsError(f"substitute epsilon must be in (0, {MAX_EPSILON:g}], got {epsilon}")
            object.__setattr__(self, "epsilon", epsilon)
        if self.candidates not in CANDIDATES:
            raise SettingsError(
                f"substitute candidates must be one of {', '.join(CANDIDATES)}, got {self.candidates!r}"
            )
        _integer(self.k, "substitute k (tokens per cluster)", 2, MAX_CLUSTER)
        _integer(self.keep_top, "substitute keep_top", 0, MAX_KEEP_TOP)
        if self.candidates == "kept" and self.keep_top == 0:
            raise SettingsError(
                "substitute candidates 'kept' draws among the keep_top kept tokens: set keep_top"
            )
        if isinstance(self.classes, str) or not all(isinstance(c, str) for c in self.classes):
            raise SettingsError("substitute classes must be a list of names")
        unknown = sorted(set(self.classes) - set(SUBSTITUTED_CLASSES))
        if unknown:
            raise SettingsError(
                f"unknown substitute class(es) {', '.join(unknown)}; "
                f"choose from {', '.join(SUBSTITUTED_CLASSES)}"
            )
        object.__setattr__(self, "classes", tuple(c for c in SUBSTITUTED_CLASSES if c in self.classes))

    @property
    def enabled(self) -> bool:
        return self.epsilon != math.inf

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"epsilon": self.epsilon, "candidates": self.candidates}
        if self.candidates == "clusters":
            data["k"] = self.k
        return {**data, "keep_top": self.keep_top, "classes": list(self.classes)}

    @classmethod
    def from_dict(cls, data: Any) -> SubstituteSettings:
        if not isinstance(data, dict):
            raise SettingsError("substitute must be an object with epsilon, candidates, keep_top, classes")
        _reject_unknown(data, {"epsilon", "candidates", "k", "keep_top", "classes"}, "substitute")
        if "epsilon" not in data:
            raise SettingsError("substitute needs 'epsilon' (leave the section out to substitute nothing)")
        classes = data.get("classes", ["numbers"])
        if not isinstance(classes, list):
            raise SettingsError("substitute classes must be a list of names")
        return cls(
            data["epsilon"],
            data.get("candidates", "vocabulary"),
            data.get("k", 20),
            data.get("keep_top", 0),
            tuple(classes),
        )

    def describe(self) -> str:
        where = {"clusters": f"clusters of {self.k}", "kept": "the kept tokens"}.get(
            self.candidates, "the vocabulary"
        )
        kept = f", top {self.keep_top:,} kept" if self.keep_top else ""
        classes = f" ({'+'.join(self.classes)} always)" if self.keep_top and self.classes else ""
        if self.candidates == "mask":
            return f"mask{kept}{classes}"
        return f"substitute eps {self.epsilon:.3g} in {where}{kept}{classes}"


@dataclass(frozen=True)
class MixSettings:
    """Cluster mixing (:mod:`operators.mixing`, ObfusLM-style): each embedding row becomes the
    softmax(cosine similarity / ``tau``)-weighted mix of its ``k`` nearest rows (itself among them), plus
    gaussian noise of ``noise`` x the embedding's scale per entry. ``k`` 1: off."""

    k: int = 1
    tau: float = 0.05
    noise: float = 0.0

    def __post_init__(self) -> None:
        _integer(self.k, "mix k (rows mixed)", 1, MAX_MIX_K)
        tau = _number(self.tau, "mix tau")
        if not MIN_MIX_TAU <= tau <= MAX_MIX_TAU:
            raise SettingsError(f"mix tau must be in [{MIN_MIX_TAU:g}, {MAX_MIX_TAU:g}], got {tau}")
        noise = _number(self.noise, "mix noise")
        if not 0.0 <= noise <= MAX_MIX_NOISE:
            raise SettingsError(f"mix noise must be in [0, {MAX_MIX_NOISE:g}], got {noise}")
        object.__setattr__(self, "tau", tau)
        object.__setattr__(self, "noise", noise)

    @property
    def enabled(self) -> bool:
        return self.k > 1

    def to_dict(self) -> dict[str, Any]:
        return {"k": self.k, "tau": self.tau, "noise": self.noise}

    @classmethod
    def from_dict(cls, data: Any) -> MixSettings:
        if not isinstance(data, dict):
            raise SettingsError("mix must be an object with k, tau, noise")
        _reject_unknown(data, {"k", "tau", "noise"}, "mix")
        if "k" not in data:
            raise SettingsError(
                "mix needs 'k', the rows each row is mixed from (leave the section out to mix nothing)"
            )
        return cls(data["k"], data.get("tau", 0.05), data.get("noise", 0.0))

    def describe(self) -> str:
        return f"mix {self.k} nearest, tau {self.tau:.3g}, noise {self.noise:.3g}"


@dataclass(frozen=True)
class ShakeSettings:
    """Horizontal coverage and flattening plus the vertical chain; everything a key is generated from."""

    coverage: float = 1.0
    vertical: tuple[OperatorSettings, ...] = field(default_factory=tuple)
    homophones: HomophoneSettings = field(default_factory=HomophoneSettings)
    substitute: SubstituteSettings = field(default_factory=SubstituteSettings)
    mix: MixSettings = field(default_factory=MixSettings)

    def __post_init__(self) -> None:
        coverage = _number(self.coverage, "coverage")
        if not 0.0 <= coverage <= 1.0:
            raise SettingsError(f"coverage must be in [0, 1], got {coverage}")
        vertical = tuple(self.vertical)
        if len(vertical) > MAX_CHAIN_LENGTH:
            raise SettingsError(f"at most {MAX_CHAIN_LENGTH} vertical operators, got {len(vertical)}")
        if not all(isinstance(op, OperatorSettings) for op in vertical):
            raise SettingsError("vertical must hold OperatorSettings")
        if not isinstance(self.homophones, HomophoneSettings):
            raise SettingsError("homophones must be HomophoneSettings")
        if not isinstance(self.substitute, SubstituteSettings):
            raise SettingsError("substitute must be SubstituteSettings")
        if not isinstance(self.mix, MixSettings):
            raise SettingsError("mix must be MixSettings")
        object.__setattr__(self, "coverage", coverage)
        object.__setattr__(self, "vertical", vertical)

    def to_dict(self) -> dict[str, Any]:
        """The settings-file form; ``homophones``, ``substitute`` and ``mix`` only when on, so settings
        without them (and the fingerprints and seeds derived from them) keep the form they had before."""
        homophones = {"homophones": self.homophones.to_dict()} if self.homophones.enabled else {}
        substitute = {"substitute": self.substitute.to_dict()} if self.substitute.enabled else {}
        mix = {"mix": self.mix.to_dict()} if self.mix.enabled else {}
        return {
            "version": SETTINGS_VERSION,
            "coverage": self.coverage,
            "vertical": [op.to_dict() for op in self.vertical],
            **homophones,
            **substitute,
            **mix,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> ShakeSettings:
        if not isinstance(data, dict):
            raise SettingsError("settings must be a JSON object")
        _reject_unknown(
            data, {"version", "coverage", "vertical", "homophones", "substitute", "mix"}, "settings"
        )
        version = data.get("version", SETTINGS_VERSION)
        if version != SETTINGS_VERSION:
            raise SettingsError(
                f"settings version {version!r} is not supported (this shaketune reads "
                f"version {SETTINGS_VERSION})"
            )
        vertical = data.get("vertical", [])
        if not isinstance(vertical, list):
            raise SettingsError("vertical must be a list of operators")
        ops = tuple(OperatorSettings.from_dict(item, f"vertical[{i}]") for i, item in enumerate(vertical))
        homophones = HomophoneSettings.from_dict(data.get("homophones", {}))
        substitute = SubstituteSettings.from_dict(data["substitute"]) if "substitute" in data else None
        mix = MixSettings.from_dict(data["mix"]) if "mix" in data else MixSettings()
        return cls(data.get("coverage", 1.0), ops, homophones, substitute or SubstituteSettings(), mix)

    @classmethod
    def from_json(cls, text: str) -> ShakeSettings:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SettingsError(
                f"settings are not valid JSON (line {exc.lineno}, column {exc.colno})"
            ) from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> ShakeSettings:
        """Read and validate a settings file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SettingsError(f"settings file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"cannot read settings file {path}: {exc.__class__.__name__}") from None
        try:
            return cls.from_json(text)
        except SettingsError as exc:
            raise SettingsError(f"{path}: {exc}") from None

    def describe(self) -> str:
        """A one-line human summary, e.g. ``coverage 1.00 | tilt 1.00@0.50 -> gaussian 0.50@1.00``."""
        chain = " -> ".join(f"{op.op} {op.intensity:.2f}@{op.dimension:.2f}" for op in self.vertical)
        if self.mix.enabled:
            chain = " -> ".join(part for part in (self.mix.describe(), chain) if part)
        text = f"coverage {self.coverage:.2f} | {chain or 'no vertical operators'}"
        if self.homophones.enabled:
            h = self.homophones
            text += f" | homophones max {h.max_share:.2%}, copy noise {h.copy_noise:.2f}"
        if self.substitute.enabled:
            text += f" | {self.substitute.describe()}"
        return text


def _chain(*ops: tuple[str, float, float]) -> tuple[OperatorSettings, ...]:
    return tuple(OperatorSettings(name, intensity, dim) for name, intensity, dim in ops)


# Named by what they do, not by how private they are: no preset is private by its name. Their measured
# leakage bounds are in docs/leakage.md and docs/benchmarks.md.
PRESETS: dict[str, ShakeSettings] = {
    "horizontal-only": ShakeSettings(1.0, ()),
    "light": ShakeSettings(1.0, _chain(("gaussian", 0.5, 1.0))),
    "medium": ShakeSettings(1.0, _chain(("tilt", 1.0, 0.5), ("gaussian", 1.0, 1.0))),
    "tilt-inflate-noise": ShakeSettings(
        1.0, _chain(("tilt", 1.5, 1.0), ("inflate", 0.5, 1.0), ("gaussian", 2.0, 1.0))
    ),
    "dx-fixp": ShakeSettings(1.0, _chain(("dx-fixp", 1.0, 1.0))),
    "flattened-tilt-noise": ShakeSettings(
        1.0, _chain(("tilt", 1.5, 1.0), ("gaussian", 2.0, 1.0)), HomophoneSettings(0.001, 1.0)
    ),
    # the 1,000 most frequent public tokens pass unless they hold a digit or belong to a word with a rarer
    # token; everything else is drawn from its whole kind of token: chosen by bench/bench_frontier.py
    # (docs/benchmarks.md)
    "rare-tokens": ShakeSettings(
        1.0, (), substitute=SubstituteSettings(2.0, "vocabulary", 20, 1000, ("numbers", "words"))
    ),
    # the same tokens written as the unknown token: nothing of them reaches the cloud (0-local DP), fewer
    # planted secrets read, a classifier by private inference as good, the recovered one about 2 points
    # worse; not for causal LMs, which learn to predict the unknown token (docs/benchmarks.md)
    "rare-tokens-masked": ShakeSettings(
        1.0, (), substitute=SubstituteSettings(1.0, "mask", 20, 1000, ("numbers", "words"))
    ),
}
# Former names that claimed a privacy only the attack suite's lower bound supported: an informed attacker
# (who knows the key's invertible operators) recovers 98-99.9% of the tokens of these settings.
RENAMED = {"strong": "tilt-inflate-noise", "flattened": "flattened-tilt-noise", "dx-privacy": "dx-fixp"}


def preset(name: str) -> ShakeSettings:
    """A named setting; ``horizontal-only`` is lossless, the others add vertical noise,
    ``flattened-tilt-noise`` also homophonic copies, ``rare-tokens`` substitutes all but the most frequent
    public tokens and ``rare-tokens-masked`` writes them as the unknown token (the keys of these three need
    public text)."""
    if name in RENAMED:
        raise SettingsError(
            f"preset {name!r} was renamed {RENAMED[name]!r}: its name claimed a privacy that only the "
            "attack suite's lower bound supported (its leakage bound is above 0.9; see docs/leakage.md)"
        )
    try:
        return PRESETS[name]
    except KeyError:
        raise SettingsError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}") from None
