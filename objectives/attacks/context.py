"""Quantities every attack needs, computed once per attacked view: counts, candidates, row spaces."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar

import torch

from objectives.attacks.matching import nearest_rows
from objectives.attacks.view import CloudView, PublicKnowledge, bigram_counts
from objectives.device import CPU

T = TypeVar("T")
EIGEN_FLOOR = 1e-6  # relative floor for covariance eigenvalues when whitening


@dataclass(frozen=True)
class Space:
    """Shaken and public rows, both transformed the same way the attacker chose (e.g. whitened)."""

    name: str
    shaken: torch.Tensor
    public: torch.Tensor


@dataclass(frozen=True)
class Guess:
    """An attack's answer: a plaintext id per shaken id (-1 where it has none), and how it got there; an
    attack that decodes text answers per occurrence of the upload's stream instead (``occurrences``)."""

    ids: torch.Tensor
    note: str = ""
    occurrences: torch.Tensor | None = None


def centred(matrix: torch.Tensor) -> torch.Tensor:
    matrix = matrix.detach().to(torch.float32)
    return matrix - matrix.mean(dim=0)


def covariance_eigh(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (ascending) and eigenvectors of the covariance of centred ``rows`` (float64)."""
    return torch.linalg.eigh((rows.T @ rows).to(torch.float64) / len(rows))


def whitened(matrix: torch.Tensor) -> torch.Tensor:
    """Rows with identity covariance: any invertible linear map becomes a rotation between two such."""
    x = centred(matrix)
    eigenvalues, vectors = covariance_eigh(x)
    floor = EIGEN_FLOOR * float(eigenvalues.max())
    transform = vectors @ torch.diag(eigenvalues.clamp_min(floor).rsqrt()) @ vectors.T
    return x @ transform.to(torch.float32)


def standardized(matrix: torch.Tensor) -> torch.Tensor:
    """Each column at mean 0 and unit variance: undoes per-dimension shifts and scalings."""
    x = centred(matrix)
    return x / x.std(dim=0).clamp_min(1e-12)


def destretched(matrix: torch.Tensor, public: torch.Tensor) -> torch.Tensor:
    """Columns standardised, then scaled to the public matrix's mean column scale.

    A secret rotation spreads variance evenly over dimensions, so a per-dimension scaling applied after
    it (``tilt`` then ``inflate``) shows up as unequal column scales, which this undoes approximately.
    """
    return standardized(matrix) * float(centred(public).std(dim=0).mean())


# Each space: how the shaken rows are transformed, and how the public rows are (given the public matrix).
SPACES = {
    "centred": (lambda shaken, public: centred(shaken), centred),
    "whitened": (lambda shaken, public: whitened(shaken), whitened),
    "standardized": (lambda shaken, public: standardized(shaken), standardized),
    "destretched": (destretched, centred),
}


class AttackContext:
    """One view under attack, with the derived quantities cached; the large matrix products run on
    ``device`` (the rows stay on the CPU, answers come back there)."""

    def __init__(self, view: CloudView, public: PublicKnowledge, device: torch.device = CPU) -> None:
        self.view = view
        self.public = public
        self.device = device
        self._spaces: dict[str, Space] = {}
        self._cache: dict[str, object] = {}

    def cached(self, name: str, compute: Callable[[], T]) -> T:
        """A quantity several attacks on this view share (e.g. the homophone groups), computed once."""
        if name not in self._cache:
            self._cache[name] = compute()
        return self._cache[name]  # type: ignore[return-value]

    @cached_property
    def counts(self) -> torch.Tensor:
        return self.view.counts()

    @cached_property
    def bigrams(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The shaken stream's adjacent pairs as :func:`bigram_counts` gives them."""
        return bigram_counts(self.view.token_ids, self.view.vocab_size)

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
        """The shaken and public rows in one of :data:`SPACES`, built on first use; the public side
        is shared by every attack on the same public knowledge."""
        if name not in self._spaces:
            shaken_transform, public_transform = SPACES[name]
            public = self.public.derived(f"space/{name}", lambda: public_transform(self.public.embedding))
            shaken = shaken_transform(self.view.embedding, self.public.embedding)
            self._spaces[name] = Space(name, shaken, public)
        return self._spaces[name]

    def guess_from(self, space: Space, rotation: torch.Tensor | None = None) -> torch.Tensor:
        """Plaintext guess for every observed shaken id: nearest public row after ``rotation``."""
        queries = space.shaken[self.observed]
        if rotation is not None:
            queries = queries @ rotation
        nearest = nearest_rows(queries, space.public[self.candidates], self.device)
        guess = torch.full((self.view.vocab_size,), -1, dtype=torch.long)
        guess[self.observed] = self.candidates[nearest]
        return guess
