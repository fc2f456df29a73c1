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
        """The decipherment of this view (computed once per view: other attacks seed from it)."""
        return context.cached(f"context/{self.states}/{self.window}", lambda: self._guess(context))

    def _guess(self, context: AttackContext) -> Guess:
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
        """Greedy moves within a frequency-rank window until a sweep changes nothing: each state, in
        turn, takes the first slot of its window (in slot order) whose move raises the likelihood."""
        n_special = counts.shape[0] - n_states
        mapping = np.concatenate([np.arange(n_states), n_slots + np.arange(n_special)])
        owner = np.full(n_slots, -1)
        owner[:n_states] = np.arange(n_states)
        moves = 0
        for _ in range(self.sweeps):
            changed = 0
            for a in range(n_states):
                window = np.arange(
                    max(0, mapping[a] - self.window), min(n_slots, mapping[a] + self.window + 1)
                )
                while len(window):
                    gains = swap_gains(counts, log_prob, mapping, owner, a, window)
                    better = np.flatnonzero((gains > 1e-9) & (window != mapping[a]))
                    if not len(better):
                        break
                    y = int(window[better[0]])
                    x, b = mapping[a], owner[y]
                    mapping[a], owner[y], owner[x] = y, a, b
                    if b >= 0:
                        mapping[b] = x
                    changed += 1
                    window = window[better[0] + 1 :]
            moves += changed
            if not changed:
                break
        return mapping[:n_states].tolist(), moves


def swap_gains(
    counts: np.ndarray,
    log_prob: np.ndarray,
    mapping: np.ndarray,
    owner: np.ndarray,
    a: int,
    slots: np.ndarray,
) -> np.ndarray:
    """Change of the bigram log-likelihood sum_ij counts[i, j] log_prob[m_i, m_j] when state a moves to
    each of ``slots`` and that slot's holder b (if any) takes a's slot x, for all slots at once.

    Only bigrams with an end in {a, b} change. With row_i(s) = sum_j counts[i, j] log_prob[s, m_j] and
    col_i(s) = sum_j counts[j, i] log_prob[m_j, s] (every j, at the current mapping), the terms between a
    and b themselves are corrected explicitly.
    """
    c, lp, m = counts, log_prob, mapping
    x, y = m[a], slots
    b = owner[y]
    held = b >= 0
    bb = np.where(held, b, a)  # a placeholder where the slot is free (its terms are masked out)
    row_a = lp[y][:, m] @ c[a]
    col_a = c[:, a] @ lp[m][:, y]
    row_a_x = float(lp[x, m] @ c[a])
    col_a_x = float(c[:, a] @ lp[m, x])
    caa = c[a, a]
    lp_xx, lp_yy, lp_xy, lp_yx = lp[x, x], lp[y, y], lp[x, y], lp[y, x]
    # a alone moves (free slot)
    alone = (row_a - caa * lp_yx + col_a - caa * lp_xy + caa * lp_yy) - (row_a_x + col_a_x - caa * lp_xx)
    # a and b swap
    cab, cba, cbb = c[a, bb], c[bb, a], c[bb, bb]
    row_b_x = c[bb] @ lp[x, m]
    col_b_x = c[:, bb].T @ lp[m, x]
    row_b_y = (c[bb] * lp[y][:, m]).sum(axis=1)
    col_b_y = (c[:, bb] * lp[m][:, y]).sum(axis=0)
    after = (
        (row_a - caa * lp_yx - cab * lp_yy)
        + (col_a - caa * lp_xy - cba * lp_yy)
        + (row_b_x - cba * lp_xx - cbb * lp_xy)
        + (col_b_x - cab * lp_xx - cbb * lp_yx)
        + caa * lp_yy
        + cbb * lp_xx
        + cab * lp_yx
        + cba * lp_xy
    )
    before = (
        (row_a_x - caa * lp_xx - cab * lp_xy)
        + (col_a_x - caa * lp_xx - cba * lp_yx)
        + (row_b_y - cba * lp_yx - cbb * lp_yy)
        + (col_b_y - cab * lp_xy - cbb * lp_yy)
        + caa * lp_xx
        + cbb * lp_yy
        + cab * lp_xy
        + cba * lp_yx
    )
    return np.where(held, after - before, alone)
