"""Frequency analysis: the k-th most frequent shaken id is taken for the k-th most frequent public token."""

from __future__ import annotations

import torch

from objectives.attacks.context import AttackContext, Guess


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
