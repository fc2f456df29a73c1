"""Homophone grouping: find which shaken ids are copies of one token, merge them, then attack the groups.

A homophonic key gives frequent tokens several shaken ids. Copies share the token's vertical transform and
differ only by their own noise, so they tend to be each other's nearest rows. The attacker knows how many
rows the key added (the shaken embedding's size minus the public vocabulary), so it merges that many
closest pairs among the frequent ids (single linkage over nearest-neighbour edges, as Kruskal's
algorithm does), then sees one id per group: merged counts, the group's mean row (averaging copies also
averages their noise away), and a token stream in group ids. Every attack of the suite then runs on that
merged view, and its answer for a group is its answer for each member.

The informed attacker is not left to estimate the groups: the copy table is fixed by the key, not drawn
per occurrence, so the bound assumes it known (``CloudView.copies``, which only the owner can fill in)
and runs the attacks on the true groups.

A second variant also uses context: copies of one token are drawn at random per occurrence, so they
share the token's neighbours. Each frequent id is described by the counts of its left and right
neighbours (among the most frequent ids), and pairs are linked by row distance (scaled by its median)
minus twice the cosine similarity of those profiles (the weight was chosen on simulated keys).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from objectives.attacks.context import AttackContext, Guess, centred
from objectives.attacks.view import CloudView
from objectives.tokens import map_token_ids

CONTEXT_FEATURES = 3000  # neighbour ids described individually; rarer ones share one bucket
CONTEXT_WEIGHT = 2.0


@dataclass(frozen=True)
class Groups:
    """``representative[s]``: the id standing for shaken id s's group (s itself when alone)."""

    representative: torch.Tensor
    merges: int

    @property
    def note(self) -> str:
        return f"{self.merges} copies merged"


def known_groups(context: AttackContext) -> Groups:
    """The view's copy groups as the key fixes them (``CloudView.copies``: an informed view only)."""
    representative = context.view.copies
    if representative is None:
        raise ValueError("the view holds no copy groups: only an informed view built with the key does")
    merges = int((representative != torch.arange(len(representative))).sum())
    return Groups(representative, merges)


def group_copies(
    context: AttackContext, by_context: bool = False, neighbours: int = 8, limit: int = 6000
) -> Groups:
    """Merge the closest pairs among the most frequent observed ids until the added rows are used up."""
    size = context.view.vocab_size
    representative = torch.arange(size)
    extra = size - context.public.vocab_size
    observed = context.observed
    rows = observed[: min(len(observed), limit, 3 * max(extra, 0) + 500)]
    if extra <= 0 or len(rows) < 2:
        return Groups(representative, 0)
    points = centred(context.view.embedding)[rows].to(context.device)
    distances = torch.cdist(points, points).cpu()
    if by_context:
        distances = distances / distances.median() - CONTEXT_WEIGHT * neighbour_similarity(context, rows)
    distances.fill_diagonal_(float("inf"))
    k = min(neighbours, len(rows) - 1)
    nearest, index = distances.topk(k, dim=1, largest=False)
    order = torch.argsort(nearest.flatten(), stable=True)
    sources = torch.arange(len(rows)).repeat_interleave(k)[order].tolist()
    targets = index.flatten()[order].tolist()
    parent = list(range(len(rows)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    merges = 0
    for a, b in zip(sources, targets, strict=True):
        if merges >= extra:
            break
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
            merges += 1
    roots = torch.as_tensor([root(i) for i in range(len(rows))])
    # the representative is the group's smallest shaken id, so special ids (singletons) keep theirs
    smallest = torch.full((len(rows),), size, dtype=torch.long).scatter_reduce(
        0, roots, rows, reduce="amin", include_self=True
    )
    representative[rows] = smallest[roots]
    return Groups(representative, merges)


def neighbour_similarity(context: AttackContext, rows: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of the left and right neighbour profiles of ``rows`` in the shaken stream."""
    size = context.view.vocab_size
    codes, counts = context.bigrams
    row_index = torch.full((size,), -1, dtype=torch.long)
    row_index[rows] = torch.arange(len(rows))
    specials = torch.as_tensor([i for i in context.public.special_ids if i < size], dtype=torch.long)
    described = torch.cat([context.observed[:CONTEXT_FEATURES], specials])  # specials mark sentence ends
    width = len(described) + 1
    feature = torch.full((size,), width - 1, dtype=torch.long)  # the last column: every rarer id
    feature[described] = torch.arange(len(described))
    profiles = torch.zeros(len(rows), 2 * width, dtype=torch.float32)
    first, second = codes // size, codes % size
    for own, other, offset in ((first, second, width), (second, first, 0)):  # right, then left neighbours
        keep = row_index[own] >= 0
        flat = row_index[own[keep]] * (2 * width) + offset + feature[other[keep]]
        profiles.view(-1).index_add_(0, flat, counts[keep].to(torch.float32))
    profiles = (profiles / profiles.norm(dim=1, keepdim=True).clamp_min(1e-12)).to(context.device)
    return (profiles @ profiles.T).cpu()


def merged_view(view: CloudView, groups: Groups) -> CloudView:
    """The upload as if each group were one id: its mean row, and the stream in representative ids."""
    embedding = view.embedding.detach().to(torch.float32).clone()
    totals = torch.zeros_like(embedding).index_add_(0, groups.representative, embedding)
    sizes = torch.bincount(groups.representative, minlength=len(embedding)).clamp_min(1)
    grouped = groups.representative != torch.arange(len(embedding))
    heads = torch.unique(groups.representative[grouped])
    embedding[heads] = totals[heads] / sizes[heads, None]
    stream = map_token_ids(view.token_ids, lambda flat: groups.representative[flat])
    return replace(view, embedding=embedding, token_ids=stream, merged=True, copies=None)


class GroupedAttack:
    """Run ``inner`` on the merged view; every member of a group gets the group's answer. The groups are
    estimated from rows (and context, ``by_context``), or taken from the key (``known``)."""

    def __init__(self, inner, by_context: bool = False, known: bool = False) -> None:
        self.inner = inner
        self.by_context = by_context
        self.known = known
        kind = "known_groups" if known else f"grouped{'_ctx' if by_context else ''}"
        self.name = f"{kind}_{inner.name}"

    def guess(self, context: AttackContext) -> Guess:
        label = "homophone-groups/known" if self.known else f"homophone-groups/{self.by_context}"
        groups, merged = context.cached(label, lambda: self._merge(context))
        inner = self.inner.guess(merged)
        note = f"{groups.note}; {inner.note}" if inner.note else groups.note
        return Guess(inner.ids[groups.representative], note)

    def _merge(self, context: AttackContext) -> tuple[Groups, AttackContext]:
        groups = known_groups(context) if self.known else group_copies(context, self.by_context)
        return groups, AttackContext(merged_view(context.view, groups), context.public, context.device)
