"""Within-cluster matching: the informed attack on mixed rows (operators/mixing.py).

Mixing gives the tokens of a cluster nearly the same row, so nearest-row matching confuses them. The
informed attacker knows every noiseless mixed row (neighbours and weights follow from the public rows),
so it scores each shaken row against each token by the row's likelihood and its count's (as the posterior
attack does), keeps each row's best few tokens, and then uses what the posterior ignores: the
permutation is one-to-one, so a token taken by the row that fits it best is not given to a second row.
Pairs are assigned greedily from the most probable down; a row whose every candidate is taken keeps its
most probable token.
"""

from __future__ import annotations

import numpy as np
import torch

from objectives.attacks.context import AttackContext, Guess
from objectives.attacks.nearest import posterior_shortlists


class ClusterMatchingAttack:
    """One-to-one matching of shaken rows to mixed public rows by row and count likelihood (each row's
    posterior shortlist)."""

    name = "cluster_matching"

    def guess(self, context: AttackContext) -> Guess:
        guess = torch.full((context.view.vocab_size,), -1, dtype=torch.long)
        ids, tokens, scores = posterior_shortlists(context)
        if not len(ids):
            return Guess(guess)
        guess[ids] = tokens[:, 0]  # each row's most probable token, where the assignment gives none
        assigned, moved = one_to_one(guess, ids, tokens, scores)
        return Guess(guess, f"{assigned} rows assigned one-to-one, {moved} moved off their best token")


def one_to_one(
    guess: torch.Tensor, ids: torch.Tensor, tokens: torch.Tensor, scores: torch.Tensor
) -> tuple[int, int]:
    """Reassign ``guess`` in place so that no two of ``ids`` share a token, taking each id's shortlisted
    ``tokens`` by ``scores`` from the most probable pair down; returns (ids assigned, ids moved)."""
    rows = ids[:, None].expand_as(tokens).reshape(-1).numpy()
    assigned = assign_greedily(rows, tokens.reshape(-1).numpy(), scores.reshape(-1).numpy())
    moved = 0
    for row, token in assigned.items():
        moved += int(guess[row] != token)
        guess[row] = token
    return len(assigned), moved


def assign_greedily(row: np.ndarray, token: np.ndarray, score: np.ndarray) -> dict[int, int]:
    """Pairs taken from the highest score down, each row and each token at most once."""
    order = np.argsort(-score, kind="stable")
    taken_rows: set[int] = set()
    taken_tokens: set[int] = set()
    assigned: dict[int, int] = {}
    for index in order.tolist():
        r, t = int(row[index]), int(token[index])
        if r in taken_rows or t in taken_tokens:
            continue
        taken_rows.add(r)
        taken_tokens.add(t)
        assigned[r] = t
    return assigned
