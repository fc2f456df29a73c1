"""The attack suite: run every attack on what the cloud sees and score each against the key."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from objectives.attacks.alignment import AlignmentAttack
from objectives.attacks.context import AttackContext, Guess
from objectives.attacks.decipherment import ContextAttack
from objectives.attacks.frequency import FrequencyAttack
from objectives.attacks.grouping import GroupedAttack
from objectives.attacks.nearest import NearestNeighbourAttack
from objectives.attacks.view import CloudView, GroundTruth, PublicKnowledge


class Attack(Protocol):
    name: str

    def guess(self, context: AttackContext) -> Guess: ...


def default_attacks(public_text: bool = True, homophonic: bool = False) -> list[Attack]:
    """The suite; without public text there is no prior, so nothing that needs one runs. Against a
    homophonic upload (more shaken rows than the public vocabulary) every attack also runs on the
    homophone groups found from rows, and the text attacks on groups found from rows and context."""
    text = [FrequencyAttack(), ContextAttack()] if public_text else []
    base = [
        *text,
        NearestNeighbourAttack("centred"),
        NearestNeighbourAttack("standardized"),
        AlignmentAttack(frequency_anchors=300 if public_text else 0),
    ]
    if not homophonic:
        return base
    by_context = [GroupedAttack(attack, by_context=True) for attack in text]
    return base + [GroupedAttack(attack) for attack in base] + by_context


def suite_for(view: CloudView, public: PublicKnowledge) -> list[Attack]:
    """The default suite for this view and public knowledge."""
    return default_attacks(bool(public.prior.sum() > 0), view.vocab_size > public.vocab_size)


@dataclass(frozen=True)
class AttackScore:
    """One attack's recovery rate (share of private token occurrences it maps to the right plaintext)."""

    recovery: float
    seconds: float
    note: str = ""


@dataclass(frozen=True)
class LeakageReport:
    """Every attack's figure on one view; leakage is the best of them."""

    scores: dict[str, AttackScore]
    occurrences: int

    @property
    def leakage(self) -> float:
        return max((s.recovery for s in self.scores.values()), default=0.0)

    @property
    def strongest(self) -> str:
        return max(self.scores, key=lambda name: self.scores[name].recovery)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.scores.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "leakage": self.leakage,
            "strongest": self.strongest,
            "occurrences": self.occurrences,
            "attacks": {name: vars(score) for name, score in self.scores.items()},
        }


def run_attacks(
    view: CloudView,
    public: PublicKnowledge,
    truth: GroundTruth,
    attacks: Sequence[Attack] | None = None,
    advance: Callable[[str], None] | None = None,
) -> LeakageReport:
    """Run ``attacks`` (default: the whole suite) and score them with the key's truth."""
    context = AttackContext(view, public)
    scores = {}
    for attack in attacks or suite_for(view, public):
        started = time.perf_counter()
        guess = attack.guess(context)
        seconds = time.perf_counter() - started
        scores[attack.name] = AttackScore(truth.recovery(guess.ids, context.counts), seconds, guess.note)
        if advance:
            advance(attack.name)
    occurrences = context.counts.clone()
    occurrences[truth.special] = 0
    return LeakageReport(scores, int(occurrences.sum()))


@dataclass(frozen=True)
class StagedLeakage:
    """Leakage at each stage the cloud sees (e.g. before and after tuning); the objective is the max."""

    stages: dict[str, LeakageReport] = field(default_factory=dict)

    @property
    def leakage(self) -> float:
        return max((r.leakage for r in self.stages.values()), default=0.0)

    def per_attack(self) -> dict[str, float]:
        """Every figure, keyed ``stage/attack``."""
        return {
            f"{stage}/{name}": score.recovery
            for stage, report in self.stages.items()
            for name, score in report.scores.items()
        }
