"""Cluster mixing (vertical, after ObfusLM, ACL 2025): each embedding row becomes a mix of its neighbours.

Row i of a vocabulary matrix E is replaced, before the vertical chain and the permutation, by

    M[i] = sum_j w_ij E[n_ij] + noise,   w_i = softmax(cos(E[i], E[n_ij]) / tau),

over its ``k`` nearest rows n_i1..n_ik by cosine similarity (itself first), plus gaussian noise of ``noise``
x the matrix's scale (the standard deviation of its entries) per entry, drawn from the key. Tokens of a
cluster get nearly the same row, so the cluster's meaning is kept while its members become hard to tell
apart; the noise is what stops an attacker from telling them apart anyway.

What is public: the neighbours and weights follow from the public pretrained rows and the settings, so an
informed attacker computes every noiseless mixed row M[i] - noise exactly; only the noise (and the
permutation) is secret. Special tokens are neither mixed nor anyone's neighbour. A small ``tau`` weighs a
row's own vector most (tau -> 0: no mixing at all); a large one averages its k neighbours evenly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from operators.randomness import KeyStream
from operators.settings import MixSettings
from operators.vertical import GaussianNoise

CHUNK = 1024  # rows whose similarities are computed at once


@dataclass(frozen=True, eq=False)
class Mixing:
    """The public part of mixing for one matrix: each row's neighbours (itself first) and weights."""

    neighbours: torch.Tensor  # vocabulary x k, long
    weights: torch.Tensor  # vocabulary x k, float32, rows sum to 1

    def mixed(self, rows: torch.Tensor) -> torch.Tensor:
        """The noiseless mixed rows: what the informed attacker computes from the public rows."""
        source = rows.detach().to(torch.float32)
        out = torch.empty_like(source)
        for start in range(0, len(source), CHUNK):
            block = source[self.neighbours[start : start + CHUNK]]  # rows x k x hidden
            weights = self.weights[start : start + CHUNK]
            out[start : start + CHUNK] = torch.einsum("rk,rkh->rh", weights, block)
        return out.to(rows.dtype)

    def own_weight(self) -> torch.Tensor:
        """The weight of each row's own vector in its mix (1 for rows not mixed)."""
        return self.weights[:, 0]


def make_mixing(rows: torch.Tensor, settings: MixSettings, special_ids: Sequence[int]) -> Mixing:
    """Neighbours by cosine similarity among the non-special rows, and softmax(similarity / tau) weights;
    special rows keep themselves alone."""
    source = rows.detach().to(torch.float32)
    size, k = len(source), settings.k
    unit = source / source.norm(dim=1, keepdim=True).clamp_min(1e-12)
    special = torch.zeros(size, dtype=torch.bool)
    special[list(special_ids)] = True
    ordinary = torch.nonzero(~special).flatten()
    if len(ordinary) < k:
        raise ValueError(f"mixing {k} rows needs at least {k} non-special rows, got {len(ordinary)}")
    neighbours = torch.arange(size)[:, None].repeat(1, k)
    weights = torch.zeros(size, k)
    weights[:, 0] = 1.0
    candidates = unit[ordinary]
    for start in range(0, len(ordinary), CHUNK):
        ids = ordinary[start : start + CHUNK]
        similarity = unit[ids] @ candidates.T
        # a row is its own first neighbour whatever the rounding (duplicate rows would tie)
        similarity[torch.arange(len(ids)), start + torch.arange(len(ids))] = torch.inf
        best, where = torch.topk(similarity, k, dim=1)
        best[:, 0] = 1.0
        neighbours[ids] = ordinary[where]
        weights[ids] = torch.softmax(best / settings.tau, dim=1)
    return Mixing(neighbours, weights)


def mix_rows(
    rows: torch.Tensor, mixing: Mixing, noise: float, scale: float, stream: KeyStream, label: str
) -> torch.Tensor:
    """Mixed rows plus the key's gaussian noise (``noise`` x ``scale`` per entry; stream ``label``
    separates the input embedding's noise from an untied head's)."""
    mixed = mixing.mixed(rows)
    if noise == 0:
        return mixed
    hidden = rows.shape[1]
    return GaussianNoise(noise, torch.arange(hidden), scale, stream).apply(mixed, noise_label=label)
