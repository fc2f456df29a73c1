"""Relational alignment: find the secret linear map from how rows relate to each other, seeded by text.

A rotation changes every row but none of their inner products, and after whitening any invertible linear
map is a rotation; isotropic noise blurs the inner products but leaves them unbiased off the diagonal.
So a shaken row's inner products with a set of *anchor* rows equal (up to noise) its plaintext row's inner
products with the anchors' plaintext rows, whatever the secret map is, and no map has to be estimated to
compare them. Anchors come from text evidence (the context attack's guess for the most frequent ids; many
of them wrong). Each round scores every (shaken id, public token) pair by the correlation of those two
profiles plus the log-likelihood of the id's count under the token's public frequency, and keeps the most
confident answers as the next round's anchors, over more ids each round (self-learning, as in
unsupervised cross-lingual embedding mapping). With enough confident pairs, orthogonal Procrustes gives
the map, refined on mutual nearest neighbours, and every row is matched after it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from objectives.attacks.alignment import procrustes
from objectives.attacks.context import AttackContext, Guess, Space
from objectives.attacks.decipherment import ContextAttack
from objectives.attacks.frequency import count_model
from objectives.attacks.matching import match_rows


def relation_profiles(rows: torch.Tensor, anchors: torch.Tensor, self_mask: torch.Tensor) -> torch.Tensor:
    """Inner products of ``rows`` with ``anchors``, a row's product with itself zeroed (noise inflates
    it), each profile centred and scaled to unit norm so profiles compare by correlation."""
    profile = rows @ anchors.T
    profile[self_mask] = 0.0
    profile = profile - profile.mean(dim=1, keepdim=True)
    return profile / profile.norm(dim=1, keepdim=True).clamp_min(1e-12)


def top_two(
    shaken: torch.Tensor, public: torch.Tensor, anchors: int, evidence: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two best public tokens of every shaken profile: correlation (scaled to ~N(0, 1) where
    unrelated) plus frequency ``evidence``; the product on ``device``, values and indices on the CPU."""
    score = (shaken.to(device) @ public.to(device).T) * math.sqrt(anchors)
    score += evidence.to(device)
    values, indices = score.topk(2, dim=1)
    return values.cpu(), indices.cpu()


@dataclass(frozen=True)
class Alignment:
    """The map found in one space and how consistent it is (share of sampled rows mutual neighbours)."""

    space: Space
    rotation: torch.Tensor
    mutual_share: float
    anchors: int


class RelationalAttack:
    """Self-learning from text-seeded anchors on rotation-invariant profiles, then Procrustes."""

    name = "relational"

    def __init__(
        self,
        spaces: tuple[str, ...] = ("centred", "whitened"),
        seeds: int = 400,
        rounds: tuple[int, ...] = (400, 400, 800, 1500, 3000, 3000),
        keep: float = 0.5,
        prior_weight: float = 0.1,
        search_candidates: int = 6000,
        refine_sample: int = 2000,
        good_enough: float = 0.5,
    ) -> None:
        self.spaces = spaces
        self.seeds = seeds
        self.rounds = rounds
        self.keep = keep
        self.prior_weight = prior_weight
        self.search_candidates = search_candidates
        self.refine_sample = refine_sample
        self.good_enough = good_enough

    def guess(self, context: AttackContext) -> Guess:
        if float(context.public.prior.sum()) == 0 or len(context.observed) < 2:
            return Guess(context.guess_from(context.space("centred")), "no public text: nearest rows only")
        seeds = ContextAttack().guess(context).ids
        best: Alignment | None = None
        for name in self.spaces:
            found = self._align(context, context.space(name), seeds)
            if best is None or found.mutual_share > best.mutual_share:
                best = found
            if best.mutual_share >= self.good_enough:
                break
        note = (
            f"{best.space.name} space, {best.anchors} anchors, {best.mutual_share:.0%} of sampled rows "
            "mutual nearest neighbours"
        )
        return Guess(context.guess_from(best.space, best.rotation), note)

    def _candidates(self, context: AttackContext) -> torch.Tensor:
        """The most frequent public tokens (frequent private ids are among them), most frequent first."""
        candidates = context.candidates
        order = torch.argsort(-context.public.prior[candidates], stable=True)
        return candidates[order[: self.search_candidates]]

    def _align(self, context: AttackContext, space: Space, seeds: torch.Tensor) -> Alignment:
        candidates = self._candidates(context)
        counts = count_model(context)
        observed = context.observed
        anchors = observed[: self.seeds]
        targets = seeds[anchors]
        for size in self.rounds:
            queries = observed[:size]
            shaken = relation_profiles(
                space.shaken[queries], space.shaken[anchors], queries[:, None] == anchors[None, :]
            )
            public = relation_profiles(
                space.public[candidates], space.public[targets], candidates[:, None] == targets[None, :]
            )
            evidence = self.prior_weight * counts.log_likelihood(context.counts[queries], candidates)
            values, indices = top_two(shaken, public, len(anchors), evidence, context.device)
            confident = torch.argsort(values[:, 0] - values[:, 1], descending=True)
            confident = confident[: max(self.seeds, int(self.keep * size))]
            anchors, targets = queries[confident], candidates[indices[confident, 0]]
        rotation = procrustes(space.shaken[anchors], space.public[targets])
        sample = observed[: self.refine_sample]
        rotation, share = self._refine(space, rotation, sample, candidates, device=context.device)
        return Alignment(space, rotation, share, len(anchors))

    @staticmethod
    def _refine(
        space: Space,
        rotation: torch.Tensor,
        sample: torch.Tensor,
        candidates: torch.Tensor,
        rounds: int = 3,
        device: torch.device | None = None,
    ) -> tuple[torch.Tensor, float]:
        """Procrustes on mutual nearest neighbours while their share grows."""
        public = space.public[candidates]
        match = match_rows(space.shaken[sample] @ rotation, public, device)
        for _ in range(rounds):
            if int(match.mutual.sum()) < 2:
                break
            pairs = sample[match.mutual], candidates[match.nearest[match.mutual]]
            candidate = procrustes(space.shaken[pairs[0]], space.public[pairs[1]])
            candidate_match = match_rows(space.shaken[sample] @ candidate, public, device)
            if candidate_match.mutual_share <= match.mutual_share:
                break
            rotation, match = candidate, candidate_match
        return rotation, match.mutual_share
