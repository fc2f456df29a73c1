"""Frequency analysis: the k-th most frequent shaken id is taken for the k-th most frequent public token."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from objectives.attacks.context import AttackContext, Guess
from operators.homophonic import copy_counts, extra_rows
from operators.settings import MIN_MAX_SHARE


def frequency_pairs(context: AttackContext, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(shaken ids, plaintext ids) paired by frequency rank, most frequent first."""
    shaken = context.observed
    candidates = context.candidates
    public = candidates[torch.argsort(-context.public.prior[candidates], stable=True)]
    n = min(len(shaken), len(public), limit or len(shaken))
    return shaken[:n], public[:n]


class FrequencyAttack:
    """Rank shaken ids by their count in the upload, pair ranks with a public unigram prior."""

    name = "frequency"

    def guess(self, context: AttackContext) -> Guess:
        shaken, plain = frequency_pairs(context)
        guess = torch.full((context.view.vocab_size,), -1, dtype=torch.long)
        guess[shaken] = plain
        return Guess(guess)


def copies_from_added_rows(prior: torch.Tensor, special_ids: Sequence[int], added: int) -> torch.Tensor:
    """Copies per plaintext id of a homophonic key that added ``added`` rows: copy counts follow from the
    public prior and max_share alone, and the one max_share that adds that many rows is found by bisection
    (the attacker sees the row count; the algorithm is public)."""
    if added <= 0:
        return torch.ones(len(prior), dtype=torch.long)
    low, high = math.log(MIN_MAX_SHARE), 0.0  # log max_share: fewer rows as it grows
    best = copy_counts(prior, special_ids, 1.0)
    for _ in range(40):
        middle = (low + high) / 2
        copies = copy_counts(prior, special_ids, math.exp(middle))
        if extra_rows(copies) >= added:
            best, low = copies, middle
        else:
            high = middle
    return best


@dataclass(frozen=True)
class CountModel:
    """Each public token's expected count in the upload (per shaken id: split over its copies), for the
    Poisson log-likelihood of an id's count under each token: frequency as evidence, not as a rank."""

    rate: torch.Tensor  # per plaintext id
    log_rate: torch.Tensor

    def log_likelihood(self, counts: torch.Tensor, plain_ids: torch.Tensor) -> torch.Tensor:
        """log P(count | token) for every (count, token) pair, up to a per-count constant."""
        counts = counts.to(torch.float32)[:, None]
        return counts * self.log_rate[plain_ids][None, :] - self.rate[plain_ids][None, :]


def count_model(context: AttackContext) -> CountModel:
    """The attacker's count model for this view: the public prior scaled to the upload's size, smoothed by
    half a count, divided over the copies a homophonic key gives each token (not for merged views)."""

    def build() -> CountModel:
        prior = context.public.prior.to(torch.float64) + 0.5
        prior[list(context.public.special_ids)] = 0.5
        rate = float(context.counts[context.observed].sum()) * prior / float(prior[context.candidates].sum())
        added = context.view.vocab_size - context.public.vocab_size
        if added > 0 and not context.view.merged:
            rate = rate / copies_from_added_rows(context.public.prior, context.public.special_ids, added)
        return CountModel(rate.to(torch.float32), torch.log(rate).to(torch.float32))

    return context.cached("count-model", build)
