"""Nearest neighbour: each shaken row is taken for the closest public pretrained row.

Two variants, since neither dominates: in the centred space (optimal for isotropic noise, immune to
``addv``) and with every column standardised (immune to ``inflate``, but it amplifies noise in the
embedding's low-variance dimensions).
"""

from __future__ import annotations

from objectives.attacks.context import AttackContext, Guess


class NearestNeighbourAttack:
    """Match shaken rows to public rows by Euclidean distance in one space."""

    def __init__(self, space: str = "centred") -> None:
        self.space = space
        self.name = "nearest" if space == "centred" else f"nearest_{space}"

    def guess(self, context: AttackContext) -> Guess:
        return Guess(context.guess_from(context.space(self.space)))
