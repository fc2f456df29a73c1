"""Selection policies: which point of the feasible Pareto front a target should use.

``max-accuracy`` (default): the most accurate setting within the leakage and cost caps; ties go to lower
leakage, then lower cost. ``knee``: the setting closest to the ideal point (best accuracy, cost and
leakage among the candidates) after scaling each objective to [0, 1] over them; a balanced choice when
no cap says what matters most. A re-optimisation replaces a target's setting only when the policy,
applied to the new front together with the current setting, picks a new one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from optuna.trial import FrozenTrial

from adaptive.study import Caps, LeakageFigures, leakage_figures, trial_settings
from adaptive.trials import objectives_of
from objectives.trial import ANSWER, TrialSettings, baseline_note, not_learnt
from operators.errors import SettingsError
from storage.repository import SelectionRecord

POLICIES = ("max-accuracy", "knee")
DEFAULT_POLICY = "max-accuracy"


@dataclass(frozen=True)
class Candidate:
    """A measured setting that could be selected: where it came from and its objectives."""

    study_name: str
    trial_number: int
    settings: TrialSettings
    accuracy: float
    cost_gflops: float
    leakage: float  # the figure the study optimised (see ``figures.measure``)
    figures: LeakageFigures | None = None
    baseline_accuracy: float | None = None  # always answering the most common label (None: not stored)
    accuracy_of: str = "private"  # which accuracy ``accuracy`` is (the study's objective)
    private_accuracy: float | None = None  # by private inference
    recovered_accuracy: float | None = None  # the owner's recovered model on plaintext, where measured
    plaintext_accuracy: float | None = None  # plaintext tuning at the same budget

    @classmethod
    def of(cls, study_name: str, trial: FrozenTrial) -> Candidate:
        accuracy, cost, leakage = objectives_of(trial)
        figures = leakage_figures(trial)
        attrs = trial.user_attrs
        return cls(
            study_name,
            trial.number,
            trial_settings(trial),
            accuracy,
            cost,
            leakage,
            figures,
            attrs.get("baseline_accuracy"),
            attrs.get("accuracy_of", "private"),
            attrs.get("accuracy"),
            attrs.get("recovered_accuracy"),
            attrs.get("plaintext_accuracy"),
        )

    def describe_accuracy(self) -> str:
        """The accuracy, which model it is of, the gap to plaintext tuning and the other accuracy where
        measured; a loud note where it is no better than the most common label."""
        what = (
            "the recovered model's accuracy on plaintext" if self.accuracy_of == "recovered" else "accuracy"
        )
        text = f"{what} {self.accuracy:.4f}"
        plaintext = self.plaintext_accuracy
        if plaintext is not None:
            text += f" (plaintext tuning {plaintext:.4f}, gap {plaintext - self.accuracy:+.4f})"
        other = self.private_accuracy if self.accuracy_of == "recovered" else self.recovered_accuracy
        if other is not None and other != self.accuracy:
            label = (
                "by private inference"
                if self.accuracy_of == "recovered"
                else "the recovered model on plaintext"
            )
            text += f"; {label} {other:.4f}"
        return text + baseline_note(self.accuracy, self.baseline_accuracy)

    @classmethod
    def of_record(cls, record: SelectionRecord) -> Candidate:
        """A recorded selection as a candidate (to compare a target's current setting with new ones)."""
        figures = LeakageFigures.from_dict(vars(record), default_attacks=record.leakage)
        settings = TrialSettings.from_dict(record.settings)
        return cls(
            record.study_name,
            record.trial_number,
            settings,
            record.accuracy,
            record.cost_gflops,
            record.leakage,
            figures,
        )

    def describe_leakage(self) -> str:
        return self.figures.describe() if self.figures else f"leakage {self.leakage:.2%}"

    def describe(self) -> str:
        return (
            f"trial {self.trial_number} of {self.study_name} (accuracy {self.accuracy:.4f}, "
            f"{self.describe_leakage()}, cost {self.cost_gflops:,.0f} GFLOP)"
        )

    def record(
        self, target: str, policy: str, caps: dict, reason: str, decision: str = "selected"
    ) -> SelectionRecord:
        """The selection record of choosing (or keeping) this candidate for ``target``."""
        figures = self.figures.to_dict() if self.figures else {}
        return SelectionRecord(
            target=target,
            study_name=self.study_name,
            trial_number=self.trial_number,
            policy=policy,
            caps=caps,
            settings=self.settings.to_dict(),
            accuracy=self.accuracy,
            cost_gflops=self.cost_gflops,
            leakage=self.leakage,
            decision=decision,
            reason=reason,
            **figures,
        )


@dataclass(frozen=True)
class Choice:
    """The chosen candidate and the reason in words."""

    candidate: Candidate
    policy: str
    reason: str


def cap_note(caps: Caps) -> str:
    """What a selection's reason adds when no leakage cap held it to a privacy figure."""
    if caps.max_leakage is not None:
        return ""
    return "; NO LEAKAGE CAP: chosen without any privacy limit (see its leakage bound)"


def _check(policy: str) -> None:
    if policy not in POLICIES:
        raise SettingsError(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")


def choose(candidates: Sequence[Candidate], policy: str = DEFAULT_POLICY) -> Choice:
    """Apply ``policy`` to a non-empty list of feasible Pareto-optimal candidates."""
    _check(policy)
    if not candidates:
        raise ValueError("no candidates")
    if policy == "max-accuracy":
        best = min(candidates, key=lambda c: (-c.accuracy, c.leakage, c.cost_gflops))
        reason = f"highest accuracy among {len(candidates)} feasible Pareto-optimal settings"
    else:
        best = min(candidates, key=_distance_to_ideal(candidates))
        reason = f"closest to the ideal point among {len(candidates)} feasible Pareto-optimal settings"
    if not_learnt(best.accuracy, best.baseline_accuracy):
        reason += f"; NOT LEARNT: no better than always giving the most common answer ({ANSWER})"
    return Choice(best, policy, reason)


def _distance_to_ideal(candidates: Sequence[Candidate]) -> Callable[[Candidate], tuple[float, int]]:
    columns = [
        [c.accuracy for c in candidates],
        [c.cost_gflops for c in candidates],
        [c.leakage for c in candidates],
    ]
    lows = [min(col) for col in columns]
    spans = [(max(col) - min(col)) or 1.0 for col in columns]
    ideal = (1.0, 0.0, 0.0)  # accuracy scaled so that 1 is best, cost and leakage so that 0 is

    def distance(c: Candidate) -> tuple[float, int]:
        values = (c.accuracy, c.cost_gflops, c.leakage)
        scaled = [(v - low) / span for v, low, span in zip(values, lows, spans, strict=True)]
        return math.dist(scaled, ideal), candidates.index(c)  # ties: the first listed

    return distance


def decide(current: Candidate | None, candidates: Sequence[Candidate], policy: str) -> tuple[bool, Choice]:
    """Whether to replace ``current`` by the policy's pick from ``candidates``, and that pick.

    The policy sees the current setting beside the new candidates; it stays unless another one wins.
    """
    if current is None:
        choice = choose(candidates, policy)
        return True, Choice(choice.candidate, policy, f"first selection: {choice.reason}")
    choice = choose([current, *candidates], policy)
    if choice.candidate is current or _same(choice.candidate, current):
        best_new = choose(candidates, policy).candidate
        return False, Choice(
            current,
            policy,
            f"kept {current.describe()}: the new study's best, {best_new.describe()}, is not better",
        )
    return True, Choice(choice.candidate, policy, f"better than {current.describe()} under {policy}")


def _same(a: Candidate, b: Candidate) -> bool:
    return (a.accuracy, a.cost_gflops, a.leakage) == (b.accuracy, b.cost_gflops, b.leakage)
