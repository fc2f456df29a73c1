"""Joint decoding of noisy rows: row likelihood, counts and context together.

The posterior attack names each shaken id from its row and its count alone. Where noise leaves several
tokens about equally likely, the text around the id's occurrences says which one it is: an id that
follows "the" and precedes "film" is more likely "best" than "beast". This attack keeps each observed
id's 20 most probable tokens by row and count (the posterior's scores), then repeatedly re-scores them with
the bigram log-likelihood of every occurrence's neighbours under public bigram statistics, given the
current guesses of those neighbours, weighted by ``weight`` (a public bigram model of a few tens of
thousands of tokens is overconfident, so the weight is well below one, and it rises to its value over the
passes, as the neighbours' guesses improve). After the passes, ids are assigned one-to-one (a 1:1 key's
permutation is a bijection), as :mod:`objectives.attacks.mixing` does. Special tokens are known and
anchor the sentence ends.
"""

from __future__ import annotations

import torch

from objectives.attacks.context import AttackContext, Guess
from objectives.attacks.mixing import one_to_one
from objectives.attacks.nearest import posterior_shortlists

PASSES = 6  # the context weight rises to its full value over the passes
SMOOTHING = 1.0  # additive smoothing of public bigrams towards unigram shares


class BigramModel:
    """log P(next | previous) under public bigram counts, smoothed towards unigram shares; looked up for
    many pairs at once."""

    def __init__(self, codes: torch.Tensor, counts: torch.Tensor, prior: torch.Tensor) -> None:
        self.size = len(prior)
        self.codes, self.counts = codes, counts.to(torch.float64)
        totals = torch.zeros(self.size, dtype=torch.float64)
        totals.index_add_(0, codes // self.size, self.counts)
        self.totals = totals
        unigram = prior.to(torch.float64) + 1.0
        self.unigram = unigram / unigram.sum()

    def log_prob(self, previous: torch.Tensor, following: torch.Tensor) -> torch.Tensor:
        """log P(following | previous), elementwise (any shape)."""
        wanted = previous * self.size + following
        at = torch.searchsorted(self.codes, wanted.flatten()).clamp_max(len(self.codes) - 1)
        found = self.codes[at] == wanted.flatten()
        pair = torch.where(found, self.counts[at], torch.zeros_like(self.counts[at])).reshape(wanted.shape)
        smoothed = pair + SMOOTHING * self.unigram[following]
        return torch.log(smoothed / (self.totals[previous] + SMOOTHING))


class JointDecodingAttack:
    """Posterior shortlists re-scored by context, then assigned one-to-one."""

    def __init__(self, weight: float = 0.1, passes: int = PASSES) -> None:
        self.weight, self.passes = weight, passes
        self.name = f"joint_w{weight:g}"

    def guess(self, context: AttackContext) -> Guess:
        guess = torch.full((context.view.vocab_size,), -1, dtype=torch.long)
        if context.public.bigrams is None:
            return Guess(guess, "no public bigrams")
        ids, tokens, row_scores = posterior_shortlists(context)
        if not len(ids):
            return Guess(guess)
        specials = torch.as_tensor(context.public.special_ids, dtype=torch.long)
        specials = specials[specials < context.view.vocab_size]
        guess[specials] = specials
        guess[ids] = tokens[:, 0]
        model = BigramModel(*context.public.bigrams, context.public.prior)
        codes, counts = context.bigrams
        size = context.view.vocab_size
        first, second = codes // size, codes % size
        row_of = torch.full((size,), -1, dtype=torch.long)
        row_of[ids] = torch.arange(len(ids))
        score = row_scores
        for step in range(self.passes):
            weight = self.weight * (step + 1) / self.passes  # context weighs more as the guesses improve
            score = row_scores + weight * self._context(model, guess, row_of, tokens, first, second, counts)
            guess[ids] = tokens.gather(1, score.argmax(dim=1, keepdim=True)).squeeze(1)
        assigned, _ = one_to_one(guess, ids, tokens, score)
        return Guess(guess, f"weight {self.weight:g}, {assigned} ids assigned one-to-one")

    @staticmethod
    def _context(
        model: BigramModel,
        guess: torch.Tensor,
        row_of: torch.Tensor,
        tokens: torch.Tensor,
        first: torch.Tensor,
        second: torch.Tensor,
        counts: torch.Tensor,
    ) -> torch.Tensor:
        """For each shortlisted (id, token): the log-likelihood of the bigrams around the id's
        occurrences with the token in its place and the neighbours at their current guesses."""
        total = torch.zeros(tokens.shape, dtype=torch.float64)
        known = guess >= 0
        # pairs (a, s): s's candidates follow a's guess
        left = (row_of[second] >= 0) & known[first]
        rows = row_of[second[left]]
        values = model.log_prob(guess[first[left]][:, None].expand(-1, tokens.shape[1]), tokens[rows])
        total.index_add_(0, rows, values * counts[left][:, None])
        # pairs (s, b): s's candidates precede b's guess
        right = (row_of[first] >= 0) & known[second]
        rows = row_of[first[right]]
        values = model.log_prob(tokens[rows], guess[second[right]][:, None].expand(-1, tokens.shape[1]))
        total.index_add_(0, rows, values * counts[right][:, None])
        return total
