"""Context decipherment: refine the frequency assignment with bigram statistics, as classic
substitution-cipher solvers do.

Frequency ranks pair the r-th most frequent shaken id with the r-th most frequent public token; ids of
similar frequency are easily confused. Which tokens follow which is a second, independent clue: the
attacker scores an assignment by the log-likelihood of the shaken stream's bigrams under public bigram
statistics and hill-climbs on it, moving each of the most frequent shaken ids to a nearby frequency rank
(swapping with its holder) whenever that raises the likelihood. Special tokens are known and anchor the
sentence boundaries.
"""

from __future__ import annotations

import numpy as np
import torch

from objectives.attacks.context import AttackContext, Guess
from objectives.attacks.frequency import FrequencyAttack, frequency_pairs


def _dense_pairs(
    codes: torch.Tensor, counts: torch.Tensor, size: int, index: torch.Tensor, n: int
) -> np.ndarray:
    """An n x n matrix of pair counts, for pairs whose both ids have an index (``index[id] >= 0``)."""
    first, second = index[codes // size], index[codes % size]
    keep = (first >= 0) & (second >= 0)
    matrix = torch.zeros(n * n, dtype=torch.float64)
    matrix.index_add_(0, first[keep] * n + second[keep], counts[keep])
    return matrix.reshape(n, n).numpy()


class ContextAttack:
    """Bigram hill climbing from the frequency assignment, over the ``states`` most frequent shaken ids."""

    name = "context"

    def __init__(
        self, states: int = 400, slack: int = 100, window: int = 12, sweeps: int = 6, smoothing: float = 1.0
    ) -> None:
        self.states = states
        self.slack = slack
        self.window = window
        self.sweeps = sweeps
        self.smoothing = smoothing

    def guess(self, context: AttackContext) -> Guess:
        start = FrequencyAttack().guess(context).ids
        if context.public.bigrams is None:
            return Guess(start, "no public bigrams: frequency ranks only")
        shaken, plain = frequency_pairs(context)
        states = shaken[: self.states]
        slots = context.candidates[torch.argsort(-context.public.prior[context.candidates], stable=True)]
        slots = slots[: len(states) + self.slack]
        if len(states) < 2:
            return Guess(start, "too few observed ids")
        counts, log_prob = self._statistics(context, states, slots)
        mapping, moves = self._climb(counts, log_prob, len(states), len(slots))
        guess = start.clone()
        guess[states] = slots[torch.as_tensor(mapping)]
        changed = int((guess[states] != plain[: len(states)]).sum())
        return Guess(guess, f"{moves} moves, {changed} of the top {len(states)} ids reassigned")

    def _statistics(
        self, context: AttackContext, states: torch.Tensor, slots: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray]:
        """Shaken bigram counts over states (+ special tokens) and public log P(next | previous) over
        slots (+ the same special tokens), smoothed towards the slots' unigram shares."""
        specials = torch.as_tensor(context.public.special_ids, dtype=torch.long)
        view_size, public_size = context.view.vocab_size, context.public.vocab_size
        specials_view = specials[specials < view_size]
        state_index = torch.full((view_size,), -1, dtype=torch.long)
        state_index[states] = torch.arange(len(states))
        state_index[specials_view] = len(states) + torch.arange(len(specials_view))
        codes, counts = context.bigrams
        shaken_pairs = _dense_pairs(codes, counts, view_size, state_index, len(states) + len(specials_view))

        slot_index = torch.full((public_size,), -1, dtype=torch.long)
        slot_index[slots] = torch.arange(len(slots))
        slot_index[specials_view] = len(slots) + torch.arange(len(specials_view))
        public_codes, public_counts = context.public.bigrams
        public_pairs = _dense_pairs(
            public_codes, public_counts, public_size, slot_index, len(slots) + len(specials_view)
        )
        unigram = public_pairs.sum(axis=0) + 1.0
        unigram /= unigram.sum()
        alpha = self.smoothing
        log_prob = np.log(
            (public_pairs + alpha * unigram) / (public_pairs.sum(axis=1, keepdims=True) + alpha)
        )
        return shaken_pairs, log_prob

    def _climb(
        self, counts: np.ndarray, log_prob: np.ndarray, n_states: int, n_slots: int
    ) -> tuple[list, int]:
        """Greedy moves within a frequency-rank window until a sweep changes nothing."""
        n_special = counts.shape[0] - n_states
        mapping = np.concatenate([np.arange(n_states), n_slots + np.arange(n_special)])
        owner = np.full(n_slots, -1)
        owner[:n_states] = np.arange(n_states)
        moves = 0
        for _ in range(self.sweeps):
            changed = 0
            for a in range(n_states):
                for y in range(max(0, mapping[a] - self.window), min(n_slots, mapping[a] + self.window + 1)):
                    if y == mapping[a]:
                        continue
                    b = owner[y]
                    if self._gain(counts, log_prob, mapping, a, b, y) > 1e-9:
                        x = mapping[a]
                        mapping[a], owner[y], owner[x] = y, a, b
                        if b >= 0:
                            mapping[b] = x
                        changed += 1
            moves += changed
            if not changed:
                break
        return mapping[:n_states].tolist(), moves

    @staticmethod
    def _gain(counts: np.ndarray, log_prob: np.ndarray, mapping: np.ndarray, a: int, b: int, y: int) -> float:
        """Change of the bigram log-likelihood when state a moves to slot y (and b, y's holder, to a's)."""
        moved = [a] if b < 0 else [a, b]
        after = mapping.copy()
        if b >= 0:
            after[b] = mapping[a]
        after[a] = y
        return _touching(counts, log_prob, after, moved) - _touching(counts, log_prob, mapping, moved)


def _touching(counts: np.ndarray, log_prob: np.ndarray, mapping: np.ndarray, moved: list[int]) -> float:
    """The part of the log-likelihood from bigrams with at least one end in ``moved``."""
    rows = float((counts[moved] * log_prob[np.ix_(mapping[moved], mapping)]).sum())
    cols = float((counts[:, moved] * log_prob[np.ix_(mapping, mapping[moved])]).sum())
    both = float((counts[np.ix_(moved, moved)] * log_prob[np.ix_(mapping[moved], mapping[moved])]).sum())
    return rows + cols - both
