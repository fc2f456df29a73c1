"""Scoring attacks per occurrence, on the token occurrences that matter.

An attack answers a plaintext id per shaken id (or, for attacks that decode text, per occurrence). It is
scored on every private occurrence against the id the owner really wrote: under substitution that is the
token before it was replaced, which a perfect guess of the permutation alone does not give. Three subsets
are scored, each a share of its occurrences (special tokens never count):

- ``all``: every private token occurrence (canaries excluded): the figure shaketune has always stated;
- ``rare``: occurrences of tokens outside the :data:`RARE_RANK` most frequent tokens of the public text (a
  fixed definition, whatever a setting keeps): where names, numbers and rare terms live;
- ``canary``: the secret tokens of the canaries planted in the attacked upload (objectives/canaries.py).

The *blind floor* of a subset is what an attacker scores without looking at the upload: always naming the
most frequent public token (of the subset's vocabulary, for ``rare``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch

RARE_RANK = 1000  # "rare": outside this many most frequent public tokens
SUBSETS = ("all", "rare", "canary")


@dataclass(frozen=True)
class Recovery:
    """Shares recovered on each subset; None where the subset holds no occurrence."""

    all: float
    rare: float | None = None
    canary: float | None = None

    def get(self, subset: str) -> float | None:
        return getattr(self, subset)

    def to_dict(self) -> dict[str, float | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def frequent_ids(prior: torch.Tensor, special_ids: Sequence[int], rank: int = RARE_RANK) -> torch.Tensor:
    """Bool per plaintext id: among the ``rank`` most frequent tokens of the public counts ``prior``
    (special tokens excluded; tokens the public text never holds are never frequent)."""
    counts = torch.as_tensor(prior, dtype=torch.float64).clone()
    counts[list(special_ids)] = 0
    top = torch.argsort(-counts, stable=True)[:rank]
    mask = torch.zeros(len(counts), dtype=torch.bool)
    mask[top[counts[top] > 0]] = True
    return mask


@dataclass(frozen=True, eq=False)
class Occurrences:
    """The attacked stream, flattened: each occurrence's shaken id, the plaintext id its owner wrote, and
    which subsets it belongs to."""

    shaken: torch.Tensor  # long
    original: torch.Tensor  # long
    private: torch.Tensor  # bool: scored in ``all`` (not special, not in a planted canary)
    rare: torch.Tensor  # bool: private and rare
    canary: torch.Tensor  # bool: a canary's secret token

    @classmethod
    def of(
        cls,
        shaken: Sequence[Sequence[int]],
        original: Sequence[Sequence[int]],
        special_ids: Sequence[int],
        frequent: torch.Tensor,
        planted: Sequence[Sequence[bool]] | None = None,
        secret: Sequence[Sequence[bool]] | None = None,
    ) -> Occurrences:
        """``planted``/``secret``: per token of each sequence, whether it belongs to a planted canary and
        whether it is one of its secret tokens (None: no canaries)."""
        flat_shaken = _flat(shaken)
        flat_original = _flat(original)
        if flat_shaken.shape != flat_original.shape:
            raise ValueError("the upload and its plaintext differ in length")
        special = torch.zeros(len(frequent), dtype=torch.bool)
        special[list(special_ids)] = True
        ordinary = ~special[flat_original]
        in_canary = _flat_bool(planted, len(flat_original))
        private = ordinary & ~in_canary
        return cls(
            flat_shaken,
            flat_original,
            private,
            private & ~frequent[flat_original],
            ordinary & _flat_bool(secret, len(flat_original)),
        )

    def masks(self) -> dict[str, torch.Tensor]:
        return {"all": self.private, "rare": self.rare, "canary": self.canary}

    def counts(self) -> dict[str, int]:
        return {name: int(mask.sum()) for name, mask in self.masks().items()}

    def score(self, guess: torch.Tensor) -> Recovery:
        """Shares of each subset's occurrences whose plaintext id ``guess`` (one per occurrence) names."""
        right = guess == self.original
        shares = {name: _share(right, mask) for name, mask in self.masks().items()}
        return Recovery(shares["all"] or 0.0, shares["rare"], shares["canary"])

    def score_ids(self, guess_of_shaken: torch.Tensor) -> Recovery:
        """The same for a guess per shaken id."""
        return self.score(guess_of_shaken[self.shaken])

    def unchanged(self, plain_of_shaken: torch.Tensor) -> Recovery:
        """Shares whose plaintext reaches the cloud as it is (the permutation aside): what an attacker
        who broke the permutation reads without decoding anything."""
        return self.score_ids(plain_of_shaken)

    def floors(self, prior: torch.Tensor, special_ids: Sequence[int], frequent: torch.Tensor) -> Recovery:
        """The blind floor of each subset: always naming the most frequent public token (for ``rare``,
        the most frequent public token outside the frequent ones)."""
        counts = torch.as_tensor(prior, dtype=torch.float64).clone()
        counts[list(special_ids)] = 0
        common = int(torch.argmax(counts))
        rare_counts = counts.masked_fill(frequent, 0)
        rare_common = int(torch.argmax(rare_counts)) if float(rare_counts.max()) > 0 else -1
        shares = {
            "all": _share(self.original == common, self.private),
            "rare": _share(self.original == rare_common, self.rare),
            "canary": _share(self.original == common, self.canary),
        }
        return Recovery(shares["all"] or 0.0, shares["rare"], shares["canary"])


def _flat(sequences: Sequence[Sequence[int]]) -> torch.Tensor:
    return torch.as_tensor([i for seq in sequences for i in seq], dtype=torch.long)


def _flat_bool(sequences: Sequence[Sequence[bool]] | None, size: int) -> torch.Tensor:
    if sequences is None:
        return torch.zeros(size, dtype=torch.bool)
    flat = torch.as_tensor([bool(b) for seq in sequences for b in seq], dtype=torch.bool)
    if len(flat) != size:
        raise ValueError("canary marks must cover every token of the upload")
    return flat


def _share(right: torch.Tensor, mask: torch.Tensor) -> float | None:
    total = int(mask.sum())
    return float((right & mask).sum()) / total if total else None
