"""Leakage of one key, as two figures: what the attack suite recovers from what the cloud sees (a lower
bound: the best attack actually run), and the informed-adversary bound (what the row-matching attacks
recover once the key's invertible operators are undone, which the data itself determines, so a cleverer
attacker may find them; only noise, flattening and training are left to protect the tokens).

A causal LM with an untied head uploads a second shaken row per id (same permutation, its own noise): both
figures are the maximum over the input rows and those output rows, the latter's attacks named
``output/attack``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from objectives.attacks.decipherment import ContextAttack
from objectives.attacks.frequency import FrequencyAttack
from objectives.attacks.scoring import Occurrences, Recovery
from objectives.attacks.suite import (
    Attack,
    LeakageReport,
    occurrences_of,
    run_attacks,
    suite_for,
)
from objectives.attacks.view import CloudView, GroundTruth, PublicKnowledge, bigram_counts, token_counts
from objectives.device import CPU
from operators.errors import SettingsError
from operators.identity import input_embedding, output_weight
from operators.key import ShakeKey
from operators.vertical import VerticalChain, embedding_scale

BOUND = "bound"
ATTACKS = "attacks"
LEAKAGE_MEASURES = (BOUND, ATTACKS)
DEFAULT_LEAKAGE_MEASURE = BOUND
# which occurrences the leakage objective scores: "sensitive" the worse of rare tokens and planted secrets,
# "all" every private token (objectives/attacks/scoring.py)
SENSITIVE, ALL = "sensitive", "all"
LEAKAGE_OBJECTIVES = (SENSITIVE, ALL)
DEFAULT_LEAKAGE_OBJECTIVE = SENSITIVE
INFORMED = "informed"  # the marker of informed-view attacks in "stage/informed/attack" names
OUTPUT = "output"  # the prefix of attacks on an untied head's rows: "output/attack"


def check_measure(measure: str) -> str:
    """``measure`` if it names a leakage figure, else a clear error."""
    if measure not in LEAKAGE_MEASURES:
        raise SettingsError(f"leakage measure must be one of {', '.join(LEAKAGE_MEASURES)}, got {measure!r}")
    return measure


def check_objective(objective: str) -> str:
    """``objective`` if it names which occurrences leakage scores, else a clear error."""
    if objective not in LEAKAGE_OBJECTIVES:
        raise SettingsError(
            f"leakage objective must be one of {', '.join(LEAKAGE_OBJECTIVES)}, got {objective!r}"
        )
    return objective


def objective_subsets(objective: str) -> tuple[str, ...]:
    """The scoring subsets a leakage objective takes the worst of."""
    return ("rare", "canary") if check_objective(objective) == SENSITIVE else ("all",)


@dataclass(frozen=True)
class Plaintext:
    """What the owner wrote, aligned token for token with the attacked upload, so attacks are scored per
    occurrence against it: the private sequences (and planted canaries after them), with per token
    whether it belongs to a canary and whether it is one of its secrets."""

    token_ids: Sequence[Sequence[int]]
    planted: Sequence[Sequence[bool]] | None = None
    secret: Sequence[Sequence[bool]] | None = None


def ground_truth(key: ShakeKey) -> GroundTruth:
    """The plaintext id of every shaken id, and which shaken ids are special tokens."""
    horizontal = key.horizontal
    special = torch.zeros(horizontal.size, dtype=torch.bool)
    special[key.encode(torch.as_tensor(key.model.special_ids, dtype=torch.long))] = True  # one copy each
    return GroundTruth(horizontal.plain_of_shaken, special)


def truth_for(
    key: ShakeKey, view: CloudView, public: PublicKnowledge, plaintext: Plaintext | None
) -> GroundTruth:
    """The truth attacks on ``view`` are scored against: per occurrence, what the owner wrote (given, or
    what the key alone says where it substitutes nothing)."""
    truth = ground_truth(key)
    if plaintext is None:
        if key.substitutes:
            raise SettingsError(
                "this key substitutes tokens: its upload is scored against the plaintext it came from "
                "(give the private data)"
            )
        return GroundTruth(truth.plain_of_shaken, truth.special, occurrences_of(view, truth, public))
    occurrences = Occurrences.of(
        view.token_ids,
        plaintext.token_ids,
        public.special_ids,
        public.frequent(),
        plaintext.planted,
        plaintext.secret,
    )
    return GroundTruth(truth.plain_of_shaken, truth.special, occurrences)


@dataclass(frozen=True)
class Exposure:
    """What an upload gives away before any attack, per scoring subset: how many occurrences it holds,
    the share reaching the cloud unchanged (the permutation aside: readable once it is broken), and the
    blind floor (always naming the most frequent public token)."""

    occurrences: dict[str, int]
    unchanged: Recovery
    floor: Recovery

    @classmethod
    def of(cls, truth: GroundTruth, public: PublicKnowledge) -> Exposure:
        occurrences = truth.occurrences
        frequent = public.frequent()
        return cls(
            occurrences.counts(),
            occurrences.unchanged(truth.plain_of_shaken),
            occurrences.floors(public.prior, public.special_ids, frequent),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "occurrences": self.occurrences,
            "unchanged": self.unchanged.to_dict(),
            "floor": self.floor.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Exposure:
        return cls(dict(data["occurrences"]), Recovery(**data["unchanged"]), Recovery(**data["floor"]))


def untied_output_rows(model: nn.Module) -> torch.Tensor | None:
    """The weight of an untied output embedding (one row per vocabulary id, like the input embedding), or
    None for a tied head and for a model without a vocabulary output layer (a classifier)."""
    weight = output_weight(model)
    rows = input_embedding(model)
    if weight is None or weight is rows or weight.shape != rows.shape:
        return None
    return None if weight.data_ptr() == rows.data_ptr() else weight


def public_knowledge(
    pretrained: nn.Module, public_token_ids: Sequence[Sequence[int]], special_ids: Sequence[int]
) -> PublicKnowledge:
    """The attacker's knowledge: the public model's embedding (and its untied output embedding, if any),
    unigram and bigram counts of public text."""
    embedding = input_embedding(pretrained).detach().cpu().clone()  # rows stay on the CPU, wherever the model
    output = untied_output_rows(pretrained)
    size = len(embedding)
    return PublicKnowledge(
        embedding,
        token_counts(public_token_ids, size),
        tuple(special_ids),
        bigram_counts(public_token_ids, size),
        model=pretrained,
        output_embedding=None if output is None else output.detach().cpu().clone(),
        token_ids=[list(seq) for seq in public_token_ids],
    )


@dataclass(frozen=True)
class StageLeakage:
    """Both figures for one stage the cloud sees (e.g. the shaken model, or after recovery training)."""

    attacks: LeakageReport  # the suite on the upload as it is
    informed: LeakageReport  # row-matching attacks with the invertible operators undone
    exposure: Exposure | None = None  # counts, unchanged shares and blind floors (None: stored before)

    @property
    def bound(self) -> float:
        """The informed-adversary figure; never below what the suite recovers."""
        return max(self.attacks.leakage, self.informed.leakage)

    def bound_on(self, subset: str) -> float | None:
        """The informed-adversary figure on a scoring subset (None where it was not scored)."""
        values = [v for v in (self.attacks.figure(subset), self.informed.figure(subset)) if v is not None]
        return max(values) if values else None

    def attacks_on(self, subset: str) -> float | None:
        """The suite's best attack on a scoring subset."""
        return self.attacks.figure(subset)

    @property
    def strongest_bound(self) -> str:
        """What sets the bound: ``informed/attack``, or the suite's attack where that is higher."""
        if self.informed.leakage > self.attacks.leakage:
            return f"{INFORMED}/{self.informed.strongest}"
        return self.attacks.strongest

    def to_dict(self) -> dict[str, Any]:
        return {
            "leakage_bound": self.bound,
            "leakage_attacks": self.attacks.leakage,
            "leakage_bound_rare": self.bound_on("rare"),
            "canary_recovery": self.bound_on("canary"),
            "strongest_bound_attack": self.strongest_bound,
            "strongest_attack": self.attacks.strongest,
            "occurrences": self.attacks.occurrences,
            "exposure": self.exposure.to_dict() if self.exposure else None,
            "attacks": {name: vars(score) for name, score in self.attacks.scores.items()},
            "informed_attacks": {name: vars(score) for name, score in self.informed.scores.items()},
        }


@dataclass(frozen=True)
class StagedLeakage:
    """Leakage at each stage the cloud sees; each figure is its maximum over the stages."""

    stages: dict[str, StageLeakage] = field(default_factory=dict)

    @property
    def attacks(self) -> float:
        """The suite's best attack over every stage: a lower bound on what an attacker recovers."""
        return max((s.attacks.leakage for s in self.stages.values()), default=0.0)

    @property
    def bound(self) -> float:
        """The informed-adversary bound over every stage (at least :attr:`attacks`)."""
        return max((s.bound for s in self.stages.values()), default=0.0)

    def on(self, subset: str, measure: str = BOUND) -> float | None:
        """A measure's figure on one scoring subset over every stage (None where no stage scored it)."""
        check_measure(measure)
        values = [
            v
            for s in self.stages.values()
            if (v := (s.bound_on(subset) if measure == BOUND else s.attacks_on(subset))) is not None
        ]
        return max(values) if values else None

    def figure(self, measure: str, objective: str = ALL) -> float:
        """The figure a study optimises and caps: ``bound`` (default) or ``attacks``, on every private
        token (``all``) or the worse of rare tokens and planted secrets (``sensitive``; where neither was
        scored, as in reports stored before, every token)."""
        if check_objective(objective) == ALL:
            return self.bound if check_measure(measure) == BOUND else self.attacks
        values = [v for subset in objective_subsets(objective) if (v := self.on(subset, measure)) is not None]
        return max(values) if values else self.figure(measure, ALL)

    def strongest_on(self, subset: str, measure: str = BOUND) -> str:
        """What sets a measure's figure on a subset: ``stage/attack`` or ``stage/informed/attack``."""
        figures: dict[str, float] = {}
        for stage, leakage in self.stages.items():
            reports = [("", leakage.attacks)]
            if measure == BOUND:
                reports.append((f"{INFORMED}/", leakage.informed))
            for prefix, report in reports:
                for name, score in report.scores.items():
                    if (value := score.on(subset)) is not None:
                        figures[f"{stage}/{prefix}{name}"] = value
        return max(figures, key=figures.get) if figures else ""

    @property
    def exposure(self) -> Exposure | None:
        """The upload's exposure (the same at every stage: the ids do not change)."""
        return next((s.exposure for s in self.stages.values() if s.exposure is not None), None)

    def per_attack(self) -> dict[str, float]:
        """Every suite figure, keyed ``stage/attack``."""
        return {
            f"{stage}/{name}": score.recovery
            for stage, leakage in self.stages.items()
            for name, score in leakage.attacks.scores.items()
        }

    def per_informed_attack(self) -> dict[str, float]:
        """Every informed-view figure, keyed ``stage/informed/attack``."""
        return {
            f"{stage}/{INFORMED}/{name}": score.recovery
            for stage, leakage in self.stages.items()
            for name, score in leakage.informed.scores.items()
        }

    @property
    def strongest(self) -> str:
        """The suite's best attack, ``stage/attack``."""
        figures = self.per_attack()
        return max(figures, key=figures.get) if figures else ""

    @property
    def strongest_bound(self) -> str:
        """What sets the bound: an informed attack, or the suite's best where that is higher."""
        figures = {**self.per_attack(), **self.per_informed_attack()}
        return max(figures, key=figures.get) if figures else ""

    def to_dict(self) -> dict[str, Any]:
        """Every stage's reports, so that a shaking measured once can be reused without attacking again."""
        return {
            stage: {
                "attacks": leakage.attacks.to_dict(),
                "informed": leakage.informed.to_dict(),
                "exposure": leakage.exposure.to_dict() if leakage.exposure else None,
            }
            for stage, leakage in self.stages.items()
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StagedLeakage:
        return cls(
            {
                stage: StageLeakage(
                    LeakageReport.from_dict(item["attacks"]),
                    LeakageReport.from_dict(item["informed"]),
                    Exposure.from_dict(item["exposure"]) if item.get("exposure") else None,
                )
                for stage, item in data.items()
            }
        )


def informed_view(view: CloudView, key: ShakeKey, public: PublicKnowledge) -> CloudView:
    """The upload with the key's invertible vertical operators undone (the noise stays): what an attacker
    who had already recovered the secret linear map would hold, with the substitution mechanism (all of
    it but the draws), the mixing (all of it but the noise) and a homophonic key's copy groups (which
    shaken ids share a token, not which token). The owner computes it with the key; compare it with
    :func:`informed_public`."""
    chain = key.vertical_chain(embedding_scale(public.embedding))
    return undone(view, chain, key.mechanism, key.mixing_of(public.embedding), copy_groups(key))


def undone(
    view: CloudView,
    chain: VerticalChain,
    mechanism: Any = None,
    mixing: Any = None,
    copies: torch.Tensor | None = None,
) -> CloudView:
    """``view`` with ``chain``'s invertible operators undone and its noise left in place; ``mechanism``:
    the key's substitution mechanism, ``mixing``: its mixing of the public rows, ``copies``: its copy
    groups, all of which the informed attacker holds."""
    rows = chain.undo_invertible(view.embedding.detach().to(torch.float32))
    return CloudView(rows, view.token_ids, mechanism=mechanism, mixing=mixing, copies=copies)


def copy_groups(key: ShakeKey) -> torch.Tensor | None:
    """A homophonic key's copy groups as the informed attacker holds them: per shaken id, the smallest
    shaken id of the same token (None for a 1:1 key). The copy table is fixed by the key, not drawn per
    occurrence, and more private text makes it easier to estimate, so the bound does not rest on it."""
    if not key.homophonic:
        return None
    plain = key.horizontal.plain_of_shaken
    shaken = torch.arange(len(plain))
    smallest = torch.full((int(plain.max()) + 1,), len(plain), dtype=torch.long)
    smallest = smallest.scatter_reduce(0, plain, shaken, reduce="amin", include_self=True)
    return smallest[plain]


def informed_public(public: PublicKnowledge, key: ShakeKey) -> PublicKnowledge:
    """The public knowledge the informed attacker compares the upload with: for a key that mixes, every
    public row replaced by its noiseless mix (the informed attacker computes it from the settings)."""
    mixing = key.mixing_of(public.embedding)
    if mixing is None:
        return public
    settings = key.settings.mix
    return public.mixed(mixing, f"{settings.k}/{settings.tau!r}")


def measure_leakage(
    shaken: nn.Module,
    shaken_token_ids: Sequence[Sequence[int]],
    public: PublicKnowledge,
    key: ShakeKey,
    advance: Callable[[str], None] | None = None,
    trained_body: bool = False,
    device: torch.device = CPU,
    plaintext: Plaintext | None = None,
) -> StageLeakage:
    """Both figures for the shaken model's embedding and the shaken training ids; ``trained_body``: the
    body was trained on shaken ids (recovery training, tuning), so the cloud can also run it. An untied
    output embedding is attacked too (against the public one, when ``public`` holds it), and each figure
    is the maximum over both. The rows are read onto the CPU (keys are applied there); the attacks'
    matrix products run on ``device``. ``plaintext``: what the owner wrote (needed for a key that
    substitutes), with any planted canaries."""
    model = shaken if trained_body else None
    view = CloudView(input_embedding(shaken).detach().cpu(), shaken_token_ids, model=model)
    rows = untied_output_rows(shaken) if public.output_embedding is not None else None
    output = None if rows is None else CloudView(rows.detach().cpu(), shaken_token_ids)
    return measure_view(view, public, key, advance, device, output=output, plaintext=plaintext)


def measure_view(
    view: CloudView,
    public: PublicKnowledge,
    key: ShakeKey,
    advance: Callable[[str], None] | None = None,
    device: torch.device = CPU,
    output: CloudView | None = None,
    plaintext: Plaintext | None = None,
) -> StageLeakage:
    """The suite on ``view`` and the informed attacks on its informed view, scored with the key; the
    attacks' matrix products run on ``device``. ``output``: an untied head's shaken rows (same ids), put
    through the same attacks against the public output rows (``PublicKnowledge.output_embedding``),
    except the text attacks that read no rows; their figures join both reports as ``output/attack``.
    Every attack is scored per occurrence against ``plaintext`` (what the key alone gives, when None)."""
    truth = truth_for(key, view, public, plaintext)
    exposure = Exposure.of(truth, public)
    stage = _measure_rows(view, public, key, truth, suite_for(view, public), advance, device)
    if output is None:
        return replace(stage, exposure=exposure)
    output_public = public.of_output_rows()
    if output_public is None:
        raise SettingsError("output rows to attack, but the public knowledge holds no output embedding")
    prefixed = (lambda name: advance(f"{OUTPUT}/{name}")) if advance else None
    attacks = row_attacks(output, output_public)
    rows = _measure_rows(output, output_public, key, truth, attacks, prefixed, device, decode=False)
    return StageLeakage(
        with_output(stage.attacks, rows.attacks), with_output(stage.informed, rows.informed), exposure
    )


def _measure_rows(
    view: CloudView,
    public: PublicKnowledge,
    key: ShakeKey,
    truth: GroundTruth,
    attacks: Sequence[Attack],
    advance: Callable[[str], None] | None,
    device: torch.device,
    decode: bool = True,
) -> StageLeakage:
    """``attacks`` on ``view`` and the informed attacks on its informed view (the key's chain at the
    scale of ``public``'s rows, as shaking used the pretrained matrix's own scale). ``decode``: the
    informed attacker also decodes substituted text (not for an untied head's rows: the same stream)."""
    suite = run_attacks(view, public, truth, attacks, advance=advance, device=device)
    chain = key.vertical_chain(embedding_scale(public.embedding))
    mechanism = key.mechanism if decode else None
    informed_rows = undone(view, chain, mechanism, key.mixing_of(public.embedding), copy_groups(key))
    if chain.has_invertible or key.mixes:
        known = informed_public(public, key)
        informed = run_attacks(informed_rows, known, truth, advance=advance, informed=True, device=device)
    else:
        # the informed view holds the upload's own rows: the attacks the suite ran are not run again; the
        # rest need the key's fixed parts (decoding, the known copy groups)
        wanted = suite_for(informed_rows, public, informed=True)
        informed = same_as_suite(suite, wanted, advance)
        extra = [attack for attack in wanted if attack.name not in suite.scores]
        if extra:
            added = run_attacks(informed_rows, public, truth, extra, advance=advance, device=device)
            informed = LeakageReport({**informed.scores, **added.scores}, informed.occurrences)
    return StageLeakage(suite, informed)


def row_attacks(view: CloudView, public: PublicKnowledge) -> list[Attack]:
    """The suite for an untied head's rows: every attack but the text attacks that read no rows (their
    figures on the same ids are the input rows' own)."""
    return [a for a in suite_for(view, public) if not isinstance(a, FrequencyAttack | ContextAttack)]


def with_output(rows: LeakageReport, output: LeakageReport) -> LeakageReport:
    """``rows``' figures and ``output``'s, the latter named ``output/attack`` (same ids, same count)."""
    scores = {**rows.scores, **{f"{OUTPUT}/{name}": score for name, score in output.scores.items()}}
    return LeakageReport(scores, rows.occurrences)


def same_as_suite(
    attacks: LeakageReport, wanted: Sequence[Attack], advance: Callable[[str], None] | None
) -> LeakageReport:
    """The informed report of a key without invertible operators: of the informed attacks ``wanted``,
    those the suite also ran on the same rows are the suite's own runs (not repeated; their time counted
    once). The others, which need the key's fixed parts, are the caller's to run."""
    names = [attack.name for attack in wanted if attack.name in attacks.scores]
    scores = {name: replace(attacks.scores[name], seconds=0.0, note="nothing to undo") for name in names}
    if advance:
        for name in names:
            advance(name)
    return LeakageReport(scores, attacks.occurrences)


def attack_count(
    view_rows: int,
    public: PublicKnowledge,
    trained_body: bool = False,
    output_rows: bool | None = None,
    substituted: bool = False,
    mixed: bool = False,
) -> int:
    """How many attacks :func:`measure_view` runs on a view of ``view_rows`` rows (for progress bars);
    ``output_rows``: an untied head's rows are attacked too (default: whenever ``public`` holds the
    public output embedding, as :func:`measure_leakage` then does for a model of that architecture);
    ``substituted``: the key substitutes, so its text is decoded too; ``mixed``: the key mixes rows."""
    view = CloudView(torch.empty(view_rows, 0), [], model=object() if trained_body else None)
    mixing = object() if mixed else None
    copies = torch.empty(0) if view_rows > public.vocab_size else None  # a homophonic key's groups
    mechanism = object() if substituted else None
    informed = CloudView(view.embedding, [], mechanism=mechanism, mixing=mixing, copies=copies)
    count = len(suite_for(view, public)) + len(suite_for(informed, public, informed=True))
    if output_rows is None:
        output_rows = public.output_embedding is not None
    if output_rows:
        output_public = public.of_output_rows() or public  # the counts depend on sizes and prior alone
        output = CloudView(torch.empty(view_rows, 0), [], mixing=mixing, copies=copies)
        informed = suite_for(output, output_public, informed=True)
        count += len(row_attacks(output, output_public)) + len(informed)
    return count
