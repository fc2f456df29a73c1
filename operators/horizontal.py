"""Horizontal shaking: a secret permutation pi of vocabulary ids, with special tokens fixed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from operators.errors import ShaketuneError
from operators.randomness import KeyStream


@dataclass(frozen=True, eq=False)
class Permutation:
    """pi as two int64 lookup tables: ``forward[i] = pi(i)`` and ``inverse[pi(i)] = i``."""

    forward: torch.Tensor
    inverse: torch.Tensor

    def __repr__(self) -> str:  # the table is secret
        return f"Permutation(size={self.size}, moved={self.moved})"

    @property
    def size(self) -> int:
        return int(self.forward.numel())

    @property
    def moved(self) -> int:
        """How many ids pi does not leave in place."""
        return int((self.forward != torch.arange(self.size)).sum())

    @property
    def plain_of_shaken(self) -> torch.Tensor:
        """The plaintext id of every shaken id (the same table as ``inverse``)."""
        return self.inverse

    @property
    def copies(self) -> torch.Tensor:
        """Shaken ids per plaintext id: one each."""
        return torch.ones(self.size, dtype=torch.long)

    def encode(self, ids: torch.Tensor, source: object = None) -> torch.Tensor:
        """Map plaintext token ids to shaken ids (any shape); deterministic, so ``source`` is unused
        (it is there so 1:1 and homophonic maps encode alike)."""
        return _lookup(self.forward, ids)

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Map shaken token ids back to plaintext ids."""
        return _lookup(self.inverse, ids)

    def decode_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Reorder vocabulary scores from shaken to plaintext order: ``out[..., i] = in[..., pi(i)]``."""
        return logits.index_select(-1, self.forward.to(logits.device))

    def rows_to_shaken(self, matrix: torch.Tensor) -> torch.Tensor:
        """Move row i of a vocabulary-indexed tensor to row pi(i)."""
        return matrix.index_select(0, self.inverse)

    def rows_to_plain(self, matrix: torch.Tensor) -> torch.Tensor:
        """Move row pi(i) of a vocabulary-indexed tensor back to row i."""
        return matrix.index_select(0, self.forward)


def _lookup(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    try:
        return table[ids]
    except IndexError:
        raise ShaketuneError(
            f"token ids must lie in [0, {table.numel()}) for this key's vocabulary"
        ) from None


def make_permutation(
    vocab_size: int, special_ids: Sequence[int], coverage: float, stream: KeyStream
) -> Permutation:
    """A permutation that moves exactly round(coverage x n) of the n non-special ids (none stays put).

    The moved ids are a secret random subset; among them pi is a uniformly random derangement.
    """
    fixed = torch.zeros(vocab_size, dtype=torch.bool)
    fixed[torch.as_tensor(list(special_ids), dtype=torch.long)] = True
    candidates = torch.nonzero(~fixed).flatten()
    count = round(coverage * candidates.numel())
    if count == 1:  # one id cannot move on its own
        count = 0
    chosen = candidates[stream.child("subset").subset(candidates.numel(), count)]
    forward = torch.arange(vocab_size)
    if count:
        shuffle = stream.child("derangement")
        while True:  # rejection sampling: ~e attempts, each a fresh uniform permutation
            order = shuffle.permutation(count)
            if not bool((order == torch.arange(count)).any()):
                break
        forward[chosen] = chosen[order]
    inverse = torch.empty_like(forward)
    inverse[forward] = torch.arange(vocab_size)
    return Permutation(forward, inverse)
