"""The attack suite: run every attack on what the cloud sees and score each against the key."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from objectives.attacks.alignment import AlignmentAttack
from objectives.attacks.context import AttackContext, Guess
from objectives.attacks.decipherment import ContextAttack
from objectives.attacks.decoding import DecodingAttack
from objectives.attacks.frequency import FrequencyAttack
from objectives.attacks.function import FunctionAttack
from objectives.attacks.grouping import GroupedAttack
from objectives.attacks.joint import JointDecodingAttack
from objectives.attacks.lm_decoding import LanguageModelDecodingAttack, is_causal_lm
from objectives.attacks.mixing import ClusterMatchingAttack
from objectives.attacks.nearest import NearestNeighbourAttack, PosteriorAttack
from objectives.attacks.relational import RelationalAttack
from objectives.attacks.scoring import Occurrences
from objectives.attacks.view import CloudView, GroundTruth, PublicKnowledge
from objectives.device import CPU


class Attack(Protocol):
    name: str

    def guess(self, context: AttackContext) -> Guess: ...


def default_attacks(
    public_text: bool = True, homophonic: bool = False, trained_body: bool = False
) -> list[Attack]:
    """The suite; without public text there is no prior, so nothing that needs one runs. Against a
    homophonic upload (more shaken rows than the public vocabulary) every attack also runs on the
    homophone groups found from rows, and the text attacks on groups found from rows and context. Where
    the cloud holds a body trained on shaken ids (after recovery training or tuning), function matching
    runs too."""
    text = [FrequencyAttack(), ContextAttack()] if public_text else []
    base = [
        *text,
        *_matching(public_text),
        AlignmentAttack(frequency_anchors=300 if public_text else 0),
        *([RelationalAttack()] if public_text else []),
    ]
    function = [FunctionAttack()] if trained_body else []
    return base + function + (_grouped(base[len(text) :], text) if homophonic else [])


def informed_attacks(
    public_text: bool = True,
    homophonic: bool = False,
    substituted: bool = False,
    mixed: bool = False,
    copies_known: bool = False,
    language_model: bool = False,
) -> list[Attack]:
    """The attacks run on the informed view (the key's invertible operators undone, mixed rows compared
    with the noiseless mixed public rows): every attack that reads rows. Attacks that estimate the map
    are pointless there, and the text attacks read no rows, so their figures are the suite's. A 1:1 key
    that mixes adds the one-to-one matching within clusters, which needs counts; the attacks that need
    the key's deterministic parts follow (:func:`key_attacks`). A homophonic upload whose copy groups are
    not known (a view built without the key) is attacked through groups estimated from rows and context."""
    text = [FrequencyAttack(), ContextAttack()] if public_text else []
    matching = _matching(public_text)
    clusters = [ClusterMatchingAttack()] if mixed and public_text and not homophonic else []
    known = homophonic and copies_known
    estimated = _grouped(matching, text) if homophonic and not known else []
    return (
        matching + clusters + estimated + key_attacks(public_text, substituted, known, mixed, language_model)
    )


def key_attacks(
    public_text: bool,
    substituted: bool,
    copies_known: bool,
    mixed: bool = False,
    language_model: bool = False,
) -> list[Attack]:
    """The informed attacks that need what the key fixes beyond its invertible operators, so the suite
    never runs them: the decoding of substituted text (which needs public text; re-read with the public
    causal LM where the target is one, ``language_model``), and for a homophonic key every attack on its
    copy groups as the key draws them (each group's copies merged: summed counts, averaged rows, one id
    per token in the stream, which a 1:1 attack then reads)."""
    decoding: list[Attack] = [DecodingAttack()] if public_text and substituted else []
    if decoding and language_model:
        decoding.append(LanguageModelDecodingAttack())
    if not copies_known:
        return decoding
    text = [FrequencyAttack(), ContextAttack()] if public_text else []
    clusters = [ClusterMatchingAttack()] if mixed and public_text else []
    known = [GroupedAttack(attack, known=True) for attack in [*text, *_matching(public_text), *clusters]]
    return known + decoding


JOINT_WEIGHTS = (0.1,)  # context weights of the joint decoders (objectives/attacks/joint.py)


def _matching(public_text: bool) -> list[Attack]:
    """Attacks that match each row to its nearest public rows, with frequency evidence where there is any,
    and with context too (the joint decoders, one per context weight)."""
    posterior = [PosteriorAttack()] if public_text else []
    joint = [JointDecodingAttack(weight) for weight in JOINT_WEIGHTS] if public_text else []
    return [NearestNeighbourAttack("centred"), NearestNeighbourAttack("standardized"), *posterior, *joint]


def _grouped(row_attacks: list[Attack], text: list[Attack]) -> list[Attack]:
    """Homophone groups merged by rows for every attack, and by rows and context for the text attacks."""
    by_rows = [GroupedAttack(attack) for attack in [*text, *row_attacks]]
    return by_rows + [GroupedAttack(attack, by_context=True) for attack in text]


def suite_for(view: CloudView, public: PublicKnowledge, informed: bool = False) -> list[Attack]:
    """The default suite (or the informed one) for this view and public knowledge."""
    text, homophonic = bool(public.prior.sum() > 0), view.vocab_size > public.vocab_size
    if informed:
        substituted, mixed, known = (v is not None for v in (view.mechanism, view.mixing, view.copies))
        return informed_attacks(text, homophonic, substituted, mixed, known, is_causal_lm(public.model))
    return default_attacks(text, homophonic, view.model is not None and public.model is not None)


@dataclass(frozen=True)
class AttackScore:
    """One attack's recovery rates: the share of private token occurrences it maps to the right plaintext
    (``recovery``), of rare-token occurrences (``rare``) and of planted secrets (``canary``); None where
    the subset was empty or not scored (reports stored before these subsets existed)."""

    recovery: float
    seconds: float
    note: str = ""
    rare: float | None = None
    canary: float | None = None

    def on(self, subset: str) -> float | None:
        """The figure on one of :data:`~objectives.attacks.scoring.SUBSETS`."""
        return self.recovery if subset == "all" else getattr(self, subset)


@dataclass(frozen=True)
class LeakageReport:
    """Every attack's figure on one view; leakage is the best of them, on each subset."""

    scores: dict[str, AttackScore]
    occurrences: int

    @property
    def leakage(self) -> float:
        return max((s.recovery for s in self.scores.values()), default=0.0)

    def figure(self, subset: str = "all") -> float | None:
        """The best attack's share on ``subset`` (None when no attack scored it)."""
        values = [v for s in self.scores.values() if (v := s.on(subset)) is not None]
        return max(values) if values else None

    def strongest_on(self, subset: str = "all") -> str:
        scored = {name: s.on(subset) for name, s in self.scores.items() if s.on(subset) is not None}
        return max(scored, key=scored.get) if scored else ""

    @property
    def strongest(self) -> str:
        return max(self.scores, key=lambda name: self.scores[name].recovery)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.scores.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "leakage": self.leakage,
            "leakage_rare": self.figure("rare"),
            "canary_recovery": self.figure("canary"),
            "strongest": self.strongest,
            "occurrences": self.occurrences,
            "attacks": {name: vars(score) for name, score in self.scores.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LeakageReport:
        """The report :meth:`to_dict` wrote (its derived figures are recomputed)."""
        scores = {name: AttackScore(**score) for name, score in data["attacks"].items()}
        return cls(scores, int(data["occurrences"]))


def run_attacks(
    view: CloudView,
    public: PublicKnowledge,
    truth: GroundTruth,
    attacks: Sequence[Attack] | None = None,
    advance: Callable[[str], None] | None = None,
    informed: bool = False,
    device: torch.device = CPU,
) -> LeakageReport:
    """Run ``attacks`` (default: the whole suite, or the informed one) and score them with the truth;
    their large matrix products run on ``device``."""
    context = AttackContext(view, public, device)
    occurrences = truth.occurrences
    if occurrences is None:  # scored per shaken id, as the key alone allows
        occurrences = occurrences_of(view, truth, public)
    scores = {}
    for attack in attacks or suite_for(view, public, informed):
        started = time.perf_counter()
        guess = attack.guess(context)
        seconds = time.perf_counter() - started
        scores[attack.name] = score_of(guess, occurrences, seconds)
        if advance:
            advance(attack.name)
    return LeakageReport(scores, int(occurrences.private.sum()))


def occurrences_of(view: CloudView, truth: GroundTruth, public: PublicKnowledge) -> Occurrences:
    """The occurrences of an upload whose plaintext the key alone gives (no substitution, no canaries)."""
    original = [
        truth.plain_of_shaken[torch.as_tensor(seq, dtype=torch.long)].tolist() for seq in view.token_ids
    ]
    return Occurrences.of(view.token_ids, original, public.special_ids, public.frequent())


def score_of(guess: Guess, occurrences: Occurrences, seconds: float) -> AttackScore:
    """An attack's figures on every subset."""
    if guess.occurrences is not None:
        recovery = occurrences.score(guess.occurrences)
    else:
        recovery = occurrences.score_ids(guess.ids)
    return AttackScore(recovery.all, seconds, guess.note, recovery.rare, recovery.canary)
