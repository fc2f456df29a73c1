"""Nearest-neighbour matching between row sets, chunked so 30k x 30k never sits in memory at once.

The products run on the device asked for (default: where the queries are); answers come back on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CHUNK = 2048


@dataclass(frozen=True)
class Match:
    """For each query row: its nearest candidate; ``mutual`` where that candidate's nearest query is it."""

    nearest: torch.Tensor  # candidate index per query
    mutual: torch.Tensor  # bool per query

    @property
    def mutual_share(self) -> float:
        return float(self.mutual.float().mean()) if self.mutual.numel() else 0.0


def nearest_rows(
    queries: torch.Tensor, candidates: torch.Tensor, device: torch.device | None = None
) -> torch.Tensor:
    """Index of the squared-L2 nearest candidate of each query (one direction only: cheaper)."""
    where = device or queries.device
    queries = queries.to(where, torch.float32)
    candidates = candidates.to(where, torch.float32)
    c_norms = (candidates * candidates).sum(dim=1)
    nearest = torch.empty(len(queries), dtype=torch.long, device=where)
    for start in range(0, len(queries), CHUNK):
        block = queries[start : start + CHUNK] @ candidates.T
        nearest[start : start + CHUNK] = block.mul_(2.0).sub_(c_norms).argmax(dim=1)
    return nearest.cpu()


def match_rows(queries: torch.Tensor, candidates: torch.Tensor, device: torch.device | None = None) -> Match:
    """Squared-L2 nearest neighbours, both ways: argmax of 2 q.c - |c|^2 (and of 2 q.c - |q|^2)."""
    where = device or queries.device
    queries = queries.to(where, torch.float32)
    candidates = candidates.to(where, torch.float32)
    c_norms = (candidates * candidates).sum(dim=1)
    q_norms = (queries * queries).sum(dim=1)
    nearest = torch.empty(len(queries), dtype=torch.long, device=where)
    best_score = torch.full((len(candidates),), -torch.inf, device=where)
    best_query = torch.zeros(len(candidates), dtype=torch.long, device=where)
    for start in range(0, len(queries), CHUNK):
        block = queries[start : start + CHUNK] @ candidates.T
        block.mul_(2.0).sub_(c_norms)
        nearest[start : start + CHUNK] = block.argmax(dim=1)
        block.add_(c_norms).sub_(q_norms[start : start + CHUNK, None])
        value, index = block.max(dim=0)
        better = value > best_score
        best_score = torch.where(better, value, best_score)
        best_query = torch.where(better, index + start, best_query)
    mutual = best_query[nearest] == torch.arange(len(queries), device=where)
    return Match(nearest.cpu(), mutual.cpu())
