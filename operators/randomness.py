"""Deterministic cryptographic randomness derived from a key's secret seed.

Every random choice of a key (the permutation, the dimensions an operator touches, its parameters and its
noise) comes from SHAKE-256 over the seed and a label naming that choice. The same seed therefore always
yields the same shaken model, labels keep the streams independent, and no draw reveals the seed.
"""

from __future__ import annotations

import hashlib
import math

import torch

_DOMAIN = b"shaketune/keystream/v1"
_UNIFORM_BITS = 23  # (k + 0.5) / 2**23 needs 24 significant bits: exact in float32, never 0 or 1


class KeyStream:
    """A named random stream; successive draws never repeat, child streams are independent."""

    def __init__(self, seed: bytes, label: str = "") -> None:
        self._seed = seed
        self._label = label
        self._draws = 0

    def __repr__(self) -> str:  # never show the seed
        return f"KeyStream(label={self._label!r})"

    def child(self, label: str) -> KeyStream:
        """An independent stream for a sub-choice, e.g. ``stream.child("vertical/0")``."""
        return KeyStream(self._seed, f"{self._label}/{label}" if self._label else label)

    def random_bytes(self, n: int) -> bytes:
        """``n`` fresh pseudo-random bytes (SHAKE-256 of seed, label and draw counter)."""
        label = self._label.encode()
        h = hashlib.shake_256()
        h.update(_DOMAIN)
        h.update(len(self._seed).to_bytes(4, "big") + self._seed)
        h.update(len(label).to_bytes(4, "big") + label)
        h.update(self._draws.to_bytes(8, "big"))
        self._draws += 1
        return h.digest(n)

    def uniform(self, n: int) -> torch.Tensor:
        """``n`` float32 values uniform on the open interval (0, 1)."""
        raw = torch.frombuffer(bytearray(self.random_bytes(4 * n)), dtype=torch.int32)
        low = raw.bitwise_and_((1 << _UNIFORM_BITS) - 1).to(torch.float32)
        return low.add_(0.5).mul_(2.0**-_UNIFORM_BITS)

    def normal(self, n: int) -> torch.Tensor:
        """``n`` standard normal float32 values (Box-Muller)."""
        pairs = (n + 1) // 2
        u = self.uniform(2 * pairs)
        radius = u[:pairs].log_().mul_(-2.0).sqrt_()
        angle = u[pairs:].mul_(2.0 * math.pi)
        out = torch.empty(2 * pairs)
        torch.mul(radius, torch.cos(angle), out=out[:pairs])
        torch.mul(radius, angle.sin_(), out=out[pairs:])
        return out[:n]

    def laplace(self, n: int) -> torch.Tensor:
        """``n`` Laplace values with unit scale (inverse CDF)."""
        centred = self.uniform(n) - 0.5
        return -torch.sign(centred) * torch.log1p(-2.0 * centred.abs())

    def exponential(self, n: int) -> torch.Tensor:
        """``n`` exponential values with unit mean."""
        return -torch.log(self.uniform(n))

    def permutation(self, n: int) -> torch.Tensor:
        """A uniformly random permutation of ``range(n)`` as int64 (argsort of 63-bit random keys)."""
        keys = torch.frombuffer(bytearray(self.random_bytes(8 * n)), dtype=torch.int64)
        keys = keys & ((1 << 63) - 1)
        return torch.argsort(keys, stable=True)

    def subset(self, n: int, k: int) -> torch.Tensor:
        """``k`` distinct indices out of ``range(n)``, sorted ascending."""
        return torch.sort(self.permutation(n)[:k]).values
