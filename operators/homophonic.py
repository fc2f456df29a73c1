"""Homophonic horizontal shaking: several shaken ids per frequent token, one chosen at random per occurrence.

A 1:1 permutation is a substitution cipher: ranking shaken ids by frequency against a public prior
recovers the most frequent tokens whatever the vertical operators do. Giving token i k_i copies, with
k_i = ceil(p_i / max_share) from a public frequency prior p, flattens the counts: no shaken id carries
much more than ``max_share`` of the text. Which copy an occurrence gets is drawn from a CSPRNG per
occurrence. Copy counts come from public data, so they are not secret; which ids are copies of which
token is.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from operators.errors import SettingsError, ShaketuneError
from operators.horizontal import _lookup, check_copy_mass
from operators.randomness import KeyStream

MAX_EXTRA_IDS = 100_000  # a bound on how far a key may grow the embedding


def copy_counts(prior: torch.Tensor, special_ids: Sequence[int], max_share: float) -> torch.Tensor:
    """k_i = ceil(share_i / max_share) copies per plaintext id (at least 1; special tokens exactly 1).

    Shares are of the non-special occurrences in ``prior`` (public counts per plaintext id).
    """
    if not 0.0 < max_share <= 1.0:
        raise SettingsError(f"max_share must be in (0, 1], got {max_share}")
    counts, total = _non_special_counts(prior, special_ids)
    if max_share >= 1.0 or total == 0:
        copies = torch.ones(len(counts), dtype=torch.long)
    else:
        # a small tolerance so a share of exactly max_share keeps one copy despite rounding
        copies = torch.ceil(counts / total / max_share - 1e-9).clamp_min(1).long()
    extra = int((copies - 1).sum())
    if extra > MAX_EXTRA_IDS:
        raise SettingsError(
            f"max_share {max_share} would add {extra} embedding rows (limit {MAX_EXTRA_IDS}); raise it"
        )
    return copies


def _non_special_counts(prior: torch.Tensor, special_ids: Sequence[int]) -> tuple[torch.Tensor, float]:
    """The prior with special tokens at 0 (they are never split), and its total."""
    counts = torch.as_tensor(prior, dtype=torch.float64).clone()
    counts[list(special_ids)] = 0
    return counts, float(counts.sum())


def sparse_copies(copies: torch.Tensor) -> tuple[tuple[int, int], ...]:
    """(plaintext id, copies) for every id with more than one copy: the form a key stores."""
    ids = torch.nonzero(copies > 1).flatten().tolist()
    return tuple((i, int(copies[i])) for i in ids)


def dense_copies(pairs: Sequence[tuple[int, int]], vocab_size: int) -> torch.Tensor:
    """The inverse of :func:`sparse_copies`."""
    copies = torch.ones(vocab_size, dtype=torch.long)
    for token, k in pairs:
        if not 0 <= token < vocab_size or k < 1:
            raise ShaketuneError(f"copy table entry ({token}, {k}) does not fit a vocabulary of {vocab_size}")
        copies[token] = k
    return copies


def random_choices(counts: torch.Tensor, source: KeyStream | None = None) -> torch.Tensor:
    """One index in [0, counts[j]) per entry, from ``source`` or, when None, from the OS CSPRNG.

    63-bit draws reduced modulo k: the bias is below k / 2**63, far under any attack's resolution.
    """
    n = int(counts.numel())
    raw = source.random_bytes(8 * n) if source is not None else secrets.token_bytes(8 * n)
    draws = torch.frombuffer(bytearray(raw), dtype=torch.int64) & ((1 << 63) - 1) if n else torch.zeros(0)
    return torch.remainder(draws.long(), counts.reshape(-1)).reshape(counts.shape)


@dataclass(frozen=True, eq=False)
class Homophones:
    """The horizontal map of a homophonic key, as lookup tables.

    ``plain_of_shaken[s]`` is the plaintext id of shaken id s; the copies of plaintext id i are
    ``shaken_of_slot[start[i] : start[i] + copies[i]]``.
    """

    plain_of_shaken: torch.Tensor
    shaken_of_slot: torch.Tensor
    start: torch.Tensor
    copies: torch.Tensor

    def __repr__(self) -> str:  # the tables are secret
        return f"Homophones(plain={self.plain_size}, shaken={self.size})"

    @property
    def size(self) -> int:
        """Rows of the shaken embedding."""
        return int(self.plain_of_shaken.numel())

    @property
    def plain_size(self) -> int:
        return int(self.copies.numel())

    def encode(self, ids: torch.Tensor, source: KeyStream | None = None) -> torch.Tensor:
        """Map every plaintext occurrence to one of its copies, chosen at random per occurrence."""
        ids = torch.as_tensor(ids, dtype=torch.long)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.plain_size):
            raise ShaketuneError(f"token ids must lie in [0, {self.plain_size}) for this key's vocabulary")
        choice = random_choices(self.copies[ids], source)
        return self.shaken_of_slot[self.start[ids] + choice]

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Map shaken ids back to plaintext ids (every copy to its token)."""
        return _lookup(self.plain_of_shaken, ids)

    def decode_logits(self, logits: torch.Tensor, copy_mass: str = "sum") -> torch.Tensor:
        """Scores over shaken ids (last dim) -> scores over plaintext ids: log-sum-exp over each token's
        copies, so softmax of the result is the softmax of ``logits`` summed over every token's copies.

        ``copy_mass="sum"``: token i's probability is the sum of its copies' probabilities, right for a
        model trained on shaken text, where each copy carries about 1/k_i of its token. ``"mean"``: minus
        log k_i, the mean of its copies' probabilities; exact for a freshly implanted model without noise,
        whose k_i copies each carry the token's whole logit (so "sum" would tilt it by log k_i).

        Any leading shape, any device; stable (each token's largest copy is subtracted before exp);
        computed in at least float32 and returned in the input's dtype; differentiable.
        """
        check_copy_mass(copy_mass)
        if logits.shape[-1] != self.size:
            raise ShaketuneError(f"logits have {logits.shape[-1]} scores; the key has {self.size} shaken ids")
        work = logits.to(torch.promote_types(logits.dtype, torch.float32)).reshape(-1, self.size)
        index = self.plain_of_shaken.to(logits.device)
        rows = work.shape[0]
        peak = torch.full((rows, self.plain_size), -torch.inf, dtype=work.dtype, device=work.device)
        peak = peak.scatter_reduce(1, index.expand(rows, -1), work.detach(), "amax")
        peak = peak.masked_fill(~torch.isfinite(peak), 0.0)  # all copies at -inf: exp gives 0, log -inf
        mass = torch.zeros_like(peak).index_add(1, index, torch.exp(work - peak.index_select(1, index)))
        out = peak + torch.log(mass)
        if copy_mass == "mean":
            out = out - torch.log(self.copies.to(out.device, out.dtype))
        return out.reshape(*logits.shape[:-1], self.plain_size).to(logits.dtype)

    def rows_to_shaken(self, matrix: torch.Tensor) -> torch.Tensor:
        """Row s of the result is row plain_of_shaken[s] of ``matrix``: every copy starts as its token."""
        return matrix.index_select(0, self.plain_of_shaken)

    def rows_to_plain(self, matrix: torch.Tensor) -> torch.Tensor:
        """Row i of the result is the mean of the rows of token i's copies (how a tuned model is
        recovered: the copies were trained as interchangeable spellings of one token)."""
        total = torch.zeros(self.plain_size, *matrix.shape[1:], dtype=torch.float64)
        total.index_add_(0, self.plain_of_shaken, matrix.to(torch.float64))
        shape = (-1,) + (1,) * (matrix.dim() - 1)
        return (total / self.copies.reshape(shape)).to(matrix.dtype)


def make_homophones(
    copies: torch.Tensor, fixed: torch.Tensor, moved: torch.Tensor, stream: KeyStream
) -> Homophones:
    """Place every copy at a secret shaken id.

    ``fixed`` plaintext ids (special tokens and those the coverage leaves unmoved) keep their first copy
    at their own id; every other copy goes to a uniformly random free id. ``moved`` ids never land on
    their own id (as with the 1:1 permutation, a moved token is moved).
    """
    vocab = int(copies.numel())
    size = int(copies.sum())
    start = torch.cumsum(copies, 0) - copies
    slot_token = torch.repeat_interleave(torch.arange(vocab), copies)
    shaken_of_slot = torch.full((size,), -1, dtype=torch.long)
    shaken_of_slot[start[fixed]] = fixed
    free_slots = torch.nonzero(shaken_of_slot < 0).flatten()
    taken = torch.zeros(size, dtype=torch.bool)
    taken[fixed] = True
    free_ids = torch.nonzero(~taken).flatten()
    order = stream.child("placement").permutation(len(free_ids))
    shaken_of_slot[free_slots] = free_ids[order]
    _move_off_own_ids(shaken_of_slot, start[moved], moved)
    plain_of_shaken = torch.empty(size, dtype=torch.long)
    plain_of_shaken[shaken_of_slot] = slot_token
    return Homophones(plain_of_shaken, shaken_of_slot, start, copies.clone())


def _move_off_own_ids(shaken_of_slot: torch.Tensor, slots: torch.Tensor, tokens: torch.Tensor) -> None:
    """Swap each listed slot that landed on its own token's id with the next listed slot (in place),
    until none is left on its own id (a swap moves both off: their ids belong to different tokens)."""
    if len(slots) < 2:
        return
    while True:
        stuck = torch.nonzero(shaken_of_slot[slots] == tokens).flatten().tolist()
        if not stuck:
            return
        for index in stuck:
            a, b = int(slots[index]), int(slots[(index + 1) % len(slots)])
            shaken_of_slot[a], shaken_of_slot[b] = shaken_of_slot[b].clone(), shaken_of_slot[a].clone()


def extra_rows(copies: torch.Tensor) -> int:
    """How many rows a copy table adds to the embedding."""
    return int(copies.sum()) - int(copies.numel())


def expected_max_share(prior: torch.Tensor, copies: torch.Tensor, special_ids: Sequence[int]) -> float:
    """The largest expected share of one shaken id under ``prior`` (what the flattening achieves)."""
    counts, total = _non_special_counts(prior, special_ids)
    return float((counts / copies).max()) / total if total else 0.0
