"""Quantities every attack needs, computed once per attacked view: counts, candidates, row spaces."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from objectives.attacks.matching import match_rows
from objectives.attacks.view import CloudView, PublicKnowledge

EIGEN_FLOOR = 1e-6  # relative floor for covariance eigenvalues when whitening


@dataclass(frozen=True)
class Space:
    """Shaken and public rows, both transformed the same way the attacker chose (e.g. whitened)."""

    name: str
    shaken: torch.Tensor
    public: torch.Tensor


def centred(matrix: torch.Tensor) -> torch.Tensor:
    matrix = matrix.detach().to(torch.float64)
    return matrix - matrix.mean(dim=0)


def whitened(matrix: torch.Tensor) -> torch.Tensor:
    """Rows with identity covariance: any invertible linear map becomes a rotation between two such."""
    x = centred(matrix)
    eigenvalues, vectors = torch.linalg.eigh(x.T @ x / len(x))
    floor = EIGEN_FLOOR * float(eigenvalues.max())
    return x @ (vectors @ torch.diag(eigenvalues.clamp_min(floor).rsqrt()) @ vectors.T)


def standardized(matrix: torch.Tensor) -> torch.Tensor:
    """Each column at mean 0 and unit variance: undoes per-dimension shifts and scalings."""
    x = centred(matrix)
    return x / x.std(dim=0).clamp_min(1e-12)


@dataclass(frozen=True)
class Guess:
    """An attack's answer: a plaintext id per shaken id (-1 where it has none), and how it got there."""

    ids: torch.Tensor
    note: str = ""


def _destretched(shaken: torch.Tensor, public: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Shaken columns standardised to the public matrix's mean column scale; public only centred.

    A secret rotation spreads variance evenly over dimensions, so a per-dimension scaling applied after
    it (``tilt`` then ``inflate``) shows up as unequal column scales, which this undoes approximately.
    """
    target = centred(public)
    return standardized(shaken) * float(target.std(dim=0).mean()), target


SPACES = {
    "centred": lambda shaken, public: (centred(shaken), centred(public)),
    "whitened": lambda shaken, public: (whitened(shaken), whitened(public)),
    "standardized": lambda shaken, public: (standardized(shaken), standardized(public)),
    "destretched": _destretched,
}


class AttackContext:
    """One view under attack, with the derived quantities cached."""

    def __init__(self, view: CloudView, public: PublicKnowledge) -> None:
        self.view = view
        self.public = public
        self._spaces: dict[str, Space] = {}

    @cached_property
    def counts(self) -> torch.Tensor:
        return self.view.counts()

    @cached_property
    def observed(self) -> torch.Tensor:
        """Shaken ids that occur in the private data, most frequent first; special tokens are not
        permuted (public knowledge), so they are left out."""
        counts = self.counts.clone()
        counts[[i for i in self.public.special_ids if i < len(counts)]] = 0
        ids = torch.nonzero(counts > 0).flatten()
        return ids[torch.argsort(-counts[ids], stable=True)]

    @cached_property
    def candidates(self) -> torch.Tensor:
        return self.public.candidates()

    def space(self, name: str) -> Space:
        """The shaken and public rows in one of :data:`SPACES`, built on first use."""
        if name not in self._spaces:
            shaken, public = SPACES[name](self.view.embedding, self.public.embedding)
            self._spaces[name] = Space(name, shaken.float(), public.float())
        return self._spaces[name]

    def guess_from(self, space: Space, rotation: torch.Tensor | None = None) -> torch.Tensor:
        """Plaintext guess for every observed shaken id: nearest public row after ``rotation``."""
        queries = space.shaken[self.observed]
        if rotation is not None:
            queries = queries @ rotation
        match = match_rows(queries, space.public[self.candidates])
        guess = torch.full((self.view.vocab_size,), -1, dtype=torch.long)
        guess[self.observed] = self.candidates[match.nearest]
        return guess
