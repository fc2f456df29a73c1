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

import optuna
from optuna.trial import FrozenTrial, TrialState

from adaptive.study import Caps, LeakageFigures, leakage_figures, trial_settings
from adaptive.trials import is_measured, objectives_of
from objectives.attacks.meanings import explain
from objectives.trial import ANSWER, TrialSettings, baseline_note, not_learnt
from operators.errors import SettingsError
from storage.repository import SelectionRecord

POLICIES = ("max-accuracy", "knee")
NONE_FEASIBLE = "none-feasible"  # a decision recording why nothing was selected (not a selection)
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
    evaluated: int | None = None  # rows the accuracy was measured on (None: not recorded)

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
            attrs.get("evaluated"),
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
        return text + baseline_note(self.accuracy, self.baseline_accuracy, self.evaluated)

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
            record.baseline_accuracy,
            record.accuracy_of or "private",
            record.private_accuracy,
            record.recovered_accuracy,
            record.plaintext_accuracy,
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
            accuracy_of=self.accuracy_of,
            baseline_accuracy=self.baseline_accuracy,
            plaintext_accuracy=self.plaintext_accuracy,
            private_accuracy=self.private_accuracy,
            recovered_accuracy=self.recovered_accuracy,
            **figures,
        )


@dataclass(frozen=True)
class Choice:
    """The chosen candidate and the reason in words."""

    candidate: Candidate
    policy: str
    reason: str


@dataclass(frozen=True)
class Infeasible:
    """Why a study has no setting within the caps, and the setting that came closest (None when nothing
    was measured)."""

    reason: str
    closest: FrozenTrial | None


def why_nothing_is_feasible(study: optuna.Study, caps: Caps) -> Infeasible:
    """How many candidates were measured, which cap refused how many, the lowest leakage and the best
    accuracy reached, and what to change: for answers that say why rather than just "nothing"."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None]
    failed = sum(t.state == TrialState.FAIL for t in trials)
    if not complete:
        return Infeasible(f"no candidate was measured ({failed} failed; the run's log says why)", None)
    tuned_ones = [t for t in complete if is_measured(t)]
    refused: dict[str, int] = {}
    for trial in complete:
        for name, value in caps.violations(*objectives_of(trial)).items():
            if value > 0 and (name == "leakage" or is_measured(trial)):
                refused[name] = refused.get(name, 0) + 1
    closest = min(complete, key=lambda t: (objectives_of(t)[2], -objectives_of(t)[0]))
    lowest = objectives_of(closest)[2]
    parts = [
        f"{len(complete)} candidate(s) measured ({len(complete) - len(tuned_ones)} stopped after their "
        f"attacks, {len(tuned_ones)} tuned, {failed} failed)"
    ]
    parts += [f"{count} over the {name} cap" for name, count in refused.items()]
    parts.append(f"the lowest leakage reached was {lowest:.2%} (trial {closest.number})")
    advice = []
    if caps.max_leakage is not None and lowest > caps.max_leakage:
        advice.append(
            f"every candidate leaks more than max_leakage {caps.max_leakage:.2%}: search settings that "
            "protect more (per-occurrence substitution, e.g. the preset rare-tokens; stronger noise) or run "
            f"more trials; raise the cap only if a leakage of {lowest:.2%} is acceptable"
        )
    if caps.min_accuracy is not None and tuned_ones:
        best = max(objectives_of(t)[0] for t in tuned_ones)
        if best < caps.min_accuracy:
            advice.append(
                f"the best accuracy measured was {best:.4f}, under min_accuracy {caps.min_accuracy:.4f}: "
                "give tuning more steps or lower the cap"
            )
    if caps.max_cost is not None and refused.get("cost"):
        advice.append(f"{refused['cost']} candidate(s) cost more than max_cost {caps.max_cost:,.0f} GFLOP")
    if not advice:
        advice.append("no single candidate met every cap at once: run more trials or relax one cap")
    return Infeasible("; ".join(parts) + ". " + "; ".join(advice), closest)


def accuracy_gap(record: SelectionRecord) -> float | None:
    """Plaintext tuning's accuracy minus the selected one (None where plaintext was not recorded)."""
    if record.plaintext_accuracy is None:
        return None
    return record.plaintext_accuracy - record.accuracy


def attacks_explained(record: SelectionRecord) -> dict[str, str]:
    """The attack names a selection cites, each in plain words."""
    names = (
        record.strongest_bound_attack,
        record.strongest_attack,
        record.strongest_rare_attack,
        record.strongest_canary_attack,
    )
    return {name: explain(name) for name in names if name}


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
    if not_learnt(best.accuracy, best.baseline_accuracy, best.evaluated):
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
