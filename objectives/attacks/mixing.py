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
from objectives.attacks.nearest import posterior_blocks

SHORTLIST = 20  # tokens kept per row before the one-to-one assignment


class ClusterMatchingAttack:
    """One-to-one matching of shaken rows to mixed public rows by row and count likelihood."""

    name = "cluster_matching"

    def __init__(self, shortlist: int = SHORTLIST) -> None:
        self.shortlist = shortlist

    def guess(self, context: AttackContext) -> Guess:
        rows, tokens, scores = [], [], []
        take = min(self.shortlist, len(context.candidates))
        for ids, score in posterior_blocks(context):
            best, where = torch.topk(score, take, dim=1)
            rows.append(ids[:, None].expand(-1, take).reshape(-1))
            tokens.append(context.candidates[where.cpu()].reshape(-1))
            scores.append(best.cpu().reshape(-1).double())
        guess = torch.full((context.view.vocab_size,), -1, dtype=torch.long)
        if not rows:
            return Guess(guess)
        row, token, score = torch.cat(rows), torch.cat(tokens), torch.cat(scores)
        first = row.reshape(-1, take)[:, 0], token.reshape(-1, take)[:, 0]
        guess[first[0]] = first[1]  # each row's most probable token, where the assignment gives none
        assigned = assign_greedily(row.numpy(), token.numpy(), score.numpy())
        moved = 0
        for r, t in assigned.items():
            moved += int(guess[r] != t)
            guess[r] = t
        return Guess(guess, f"{len(assigned)} rows assigned one-to-one, {moved} moved off their best token")


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
