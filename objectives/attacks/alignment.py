"""Anchored alignment: recover the secret map between shaken and public rows, then match neighbours.

The vertical operators without noise form an invertible linear map (plus a shift). Three facts let an
attacker find it without knowing any pair: centring removes the shift; whitening both matrices turns any
invertible linear map into a rotation, and a row's whitened (Mahalanobis) norm is unchanged by it, so
rows pair up by that norm; a rotation with isotropic noise leaves the principal axes in place, so the
top principal coordinates of both matrices agree up to sign. Each such starting guess yields anchors;
orthogonal Procrustes on the anchors, then mutual nearest neighbours as new anchors, refine it (as in
unsupervised cross-lingual embedding mapping, e.g. VecMap). The attacker keeps the start whose final
map makes the most rows mutual nearest neighbours: a criterion it can compute without the key.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from objectives.attacks.context import AttackContext, Guess, Space, covariance_eigh
from objectives.attacks.frequency import frequency_pairs
from objectives.attacks.matching import match_rows


def procrustes(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The orthogonal R minimising |source R - target| (rows paired)."""
    u, _, vt = torch.linalg.svd((source.T @ target).to(torch.float64))
    return (u @ vt).to(torch.float32)


def principal_coordinates(rows: torch.Tensor) -> torch.Tensor:
    """Coordinates of centred rows on their principal axes, largest variance first, each axis signed
    by its skewness."""
    _, vectors = covariance_eigh(rows)
    coords = rows @ vectors.flip(1).to(torch.float32)
    return coords * torch.sign((coords.double() ** 3).mean(dim=0)).to(torch.float32)


@dataclass(frozen=True)
class Start:
    """A starting map in one space; ``label`` names how it was found."""

    label: str
    space: Space
    rotation: torch.Tensor


@dataclass(frozen=True)
class Outcome:
    label: str
    space: Space
    rotation: torch.Tensor
    mutual_share: float


class AlignmentAttack:
    """Find the map between shaken and public rows from several starts; keep the most consistent."""

    name = "alignment"

    def __init__(
        self,
        sample: int = 1000,
        iterations: int = 3,
        principal_ks: tuple[int, ...] = (8, 24),
        frequency_anchors: int = 300,
        good_enough: float = 0.9,
        search_candidates: int = 8000,
    ) -> None:
        self.sample = sample
        self.iterations = iterations
        self.principal_ks = principal_ks
        self.frequency_anchors = frequency_anchors
        self.good_enough = good_enough
        self.search_candidates = search_candidates

    def guess(self, context: AttackContext) -> Guess:
        sample = context.observed[: self.sample]
        candidates = self._search_candidates(context)
        best: Outcome | None = None
        for start in self._starts(context, sample, candidates):
            outcome = self._refine(start, sample, candidates, context.device)
            if best is None or outcome.mutual_share > best.mutual_share:
                best = outcome
            if best.mutual_share >= self.good_enough:
                break
        note = f"start {best.label}, {best.mutual_share:.0%} of sampled rows mutual nearest neighbours"
        return Guess(context.guess_from(best.space, best.rotation), note)

    def _search_candidates(self, context: AttackContext) -> torch.Tensor:
        """While searching for the map, only the most frequent public tokens are candidates (the final
        match uses all): frequent private tokens are frequent public ones, and it is several times faster."""
        candidates = context.candidates
        if float(context.public.prior.sum()) == 0 or len(candidates) <= self.search_candidates:
            return candidates
        order = torch.argsort(-context.public.prior[candidates], stable=True)
        return candidates[order[: self.search_candidates]]

    def _starts(self, context: AttackContext, sample: torch.Tensor, candidates: torch.Tensor):
        """Starting maps, cheapest and most often right first (a generator: later ones may be skipped)."""
        hidden = context.view.embedding.shape[1]
        identity = torch.eye(hidden)
        yield Start("identity", context.space("centred"), identity)
        yield Start("standardized", context.space("standardized"), identity)
        white = context.space("whitened")
        yield Start("whitened-norm", white, self._norm_rank_rotation(white))
        for name in ("centred", "destretched"):
            yield from self._principal_starts(context, context.space(name), sample, candidates)
        centred = context.space("centred")
        if self.frequency_anchors < 2:
            return
        shaken_ids, plain_ids = frequency_pairs(context, self.frequency_anchors)
        if len(shaken_ids) >= 2:
            rotation = procrustes(centred.shaken[shaken_ids], centred.public[plain_ids])
            yield Start("frequency", centred, rotation)

    def _principal_starts(
        self, context: AttackContext, space: Space, sample: torch.Tensor, candidates: torch.Tensor
    ):
        """Anchors from matching the top-k principal coordinates (a rotation moves the axes with it)."""
        shaken_pc = principal_coordinates(space.shaken)
        public_pc = context.public.derived(
            f"principal/{space.name}", lambda: principal_coordinates(space.public)
        )
        for k in self.principal_ks:
            match = match_rows(shaken_pc[sample, :k], public_pc[candidates, :k], context.device)
            if int(match.mutual.sum()) >= k:
                a, b = sample[match.mutual], candidates[match.nearest[match.mutual]]
                rotation = procrustes(space.shaken[a], space.public[b])
                yield Start(f"{space.name}-principal-{k}", space, rotation)

    @staticmethod
    def _norm_rank_rotation(space: Space) -> torch.Tensor:
        """Pair rows by rank of their whitened norm (quantiles when the row counts differ)."""
        shaken_order = torch.argsort(space.shaken.norm(dim=1))
        public_order = torch.argsort(space.public.norm(dim=1))
        n = min(len(shaken_order), len(public_order))
        pick = lambda order: order[torch.linspace(0, len(order) - 1, n).round().long()]  # noqa: E731
        return procrustes(space.shaken[pick(shaken_order)], space.public[pick(public_order)])

    def _refine(
        self, start: Start, sample: torch.Tensor, candidates: torch.Tensor, device: torch.device | None = None
    ) -> Outcome:
        """Alternate matching and Procrustes on mutual nearest neighbours until they stop growing."""
        space, rotation = start.space, start.rotation
        public = space.public[candidates]
        match = match_rows(space.shaken[sample] @ rotation, public, device)
        for _ in range(self.iterations):
            anchors = match.mutual
            if int(anchors.sum()) < 2:
                break
            a, b = sample[anchors], candidates[match.nearest[anchors]]
            candidate_rotation = procrustes(space.shaken[a], space.public[b])
            candidate_match = match_rows(space.shaken[sample] @ candidate_rotation, public, device)
            if candidate_match.mutual_share <= match.mutual_share:
                break
            rotation, match = candidate_rotation, candidate_match
        return Outcome(start.label, space, rotation, match.mutual_share)
