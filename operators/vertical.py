"""Vertical shaking: the six CypherTalk operators that transform embedding vectors.

Each operator touches a secret subset of the embedding dimensions (its *dimension* setting is the share
of dimensions it touches) with a strength set by its *intensity*, measured against the embedding's own
scale (the standard deviation of all its entries). All parameters come from the key's stream, so the
same key gives the same transform. ``addv``, ``inflate`` and ``tilt`` are invertible; the three noise
operators are not (the noise is drawn per row and never stored).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch

from operators.errors import SettingsError
from operators.randomness import KeyStream


class VerticalOperator(ABC):
    """One operator bound to its secret dimensions and parameters."""

    name: ClassVar[str]
    max_intensity: ClassVar[float]
    invertible: ClassVar[bool]
    summary: ClassVar[str]
    min_dims: ClassVar[int] = 1

    def __init__(self, intensity: float, dims: torch.Tensor, scale: float, stream: KeyStream):
        self.intensity = float(intensity)
        self.dims = dims
        self.scale = float(scale)
        self._stream = stream

    @property
    def k(self) -> int:
        """How many embedding dimensions this operator touches."""
        return int(self.dims.numel())

    def apply(self, matrix: torch.Tensor, noise_label: str = "input") -> torch.Tensor:
        """Return a transformed copy of ``matrix`` (rows are embedding vectors); other columns untouched."""
        noise = self._stream.child(f"noise/{noise_label}")
        return self._on_columns(matrix, lambda block: self.transform(block, noise))

    def invert(self, matrix: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`apply` (only invertible operators)."""
        if not self.invertible:
            raise NotImplementedError(f"{self.name} adds fresh noise and cannot be inverted")
        return self._on_columns(matrix, self.inverse)

    def _on_columns(self, matrix: torch.Tensor, fn) -> torch.Tensor:
        if self.k == matrix.shape[1]:  # every dimension: no gather/scatter needed
            return fn(matrix.to(torch.float32)).to(matrix.dtype)
        out = matrix.clone()
        out[:, self.dims] = fn(matrix[:, self.dims].to(torch.float32)).to(matrix.dtype)
        return out

    @abstractmethod
    def transform(self, block: torch.Tensor, noise: KeyStream) -> torch.Tensor:
        """Transform the selected columns (float32, rows x k) into a new tensor; never in place."""

    def inverse(self, block: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class AddVector(VerticalOperator):
    name = "addv"
    max_intensity = 10.0
    invertible = True
    summary = "adds one secret vector to every row (norm ~ intensity x scale x sqrt(k))"

    def __init__(self, intensity, dims, scale, stream):
        super().__init__(intensity, dims, scale, stream)
        self.vector = stream.child("vector").normal(self.k) * (self.intensity * self.scale)

    def transform(self, block, noise):
        return block + self.vector

    def inverse(self, block):
        return block - self.vector


class Inflate(VerticalOperator):
    name = "inflate"
    max_intensity = 3.0
    invertible = True
    summary = "scales each touched dimension by a secret factor exp(intensity x N(0,1))"

    def __init__(self, intensity, dims, scale, stream):
        super().__init__(intensity, dims, scale, stream)
        self.factors = torch.exp(stream.child("factors").normal(self.k) * self.intensity)

    def transform(self, block, noise):
        return block * self.factors

    def inverse(self, block):
        return block / self.factors


class Tilt(VerticalOperator):
    name = "tilt"
    max_intensity = 1.5
    invertible = True
    summary = "rotates the touched dimensions by a secret orthogonal map exp(intensity x S)"
    min_dims = 2

    def __init__(self, intensity, dims, scale, stream):
        super().__init__(intensity, dims, scale, stream)
        g = stream.child("generator").normal(self.k * self.k).reshape(self.k, self.k).double()
        skew = (g - g.T) / math.sqrt(2 * self.k)  # spectral radius ~2, so angles reach ~2 x intensity
        self.rotation = torch.linalg.matrix_exp(self.intensity * skew).to(torch.float32)

    def transform(self, block, noise):
        return block @ self.rotation

    def inverse(self, block):
        return block @ self.rotation.T


class DxPrivacyNoise(VerticalOperator):
    name = "dx-fixp"
    max_intensity = 10.0
    invertible = False
    summary = (
        "metric-DP noise: uniform direction, Gamma(k, 1/epsilon) radius; mean radius = "
        "intensity x scale x sqrt(k)"
    )

    @property
    def epsilon(self) -> float:
        """The d_chi-privacy parameter this intensity corresponds to (per unit of embedding distance)."""
        if self.intensity == 0:
            return math.inf
        return math.sqrt(self.k) / (self.intensity * self.scale)

    def transform(self, block, noise):
        rows = block.shape[0]
        direction = noise.child("direction").normal(rows * self.k).reshape(rows, self.k)
        direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-12)
        gamma = noise.child("radius").exponential(rows * self.k).reshape(rows, self.k).sum(dim=1)
        radius = gamma / self.epsilon if self.intensity > 0 else torch.zeros(rows)
        return block + direction * radius.unsqueeze(1)


class GaussianNoise(VerticalOperator):
    name = "gaussian"
    max_intensity = 10.0
    invertible = False
    summary = "adds independent N(0, (intensity x scale)^2) noise to each touched entry"

    def transform(self, block, noise):
        draws = noise.normal(block.numel()).reshape(block.shape)
        return block + draws.mul_(self.intensity * self.scale)


class LaplaceNoise(VerticalOperator):
    name = "laplace"
    max_intensity = 10.0
    invertible = False
    summary = "adds independent Laplace noise with standard deviation intensity x scale"

    def transform(self, block, noise):
        draws = noise.laplace(block.numel()).reshape(block.shape)
        return block + draws.mul_(self.intensity * self.scale / math.sqrt(2.0))


OPERATORS: dict[str, type[VerticalOperator]] = {
    cls.name: cls for cls in (AddVector, Inflate, Tilt, DxPrivacyNoise, GaussianNoise, LaplaceNoise)
}


def dimension_count(share: float, hidden_size: int, op: str) -> int:
    """How many of ``hidden_size`` dimensions an operator with this *dimension* share touches."""
    return min(hidden_size, max(OPERATORS[op].min_dims, round(share * hidden_size)))


def embedding_scale(matrix: torch.Tensor) -> float:
    """The embedding's own scale: standard deviation of all its entries."""
    return float(matrix.detach().to(torch.float32).std())


@dataclass(frozen=True)
class VerticalChain:
    """The key's vertical part {vsn, vsops, vsopts}: operators applied in order."""

    operators: tuple[VerticalOperator, ...]

    @property
    def invertible(self) -> bool:
        return all(op.invertible for op in self.operators)

    def apply(self, matrix: torch.Tensor, noise_label: str = "input") -> torch.Tensor:
        """Transform every row of ``matrix``; ``noise_label`` separates noise for different matrices."""
        with torch.no_grad():
            for op in self.operators:
                matrix = op.apply(matrix, noise_label)
        return matrix

    @property
    def has_invertible(self) -> bool:
        """Whether any operator is one the informed adversary is assumed to undo."""
        return any(op.invertible for op in self.operators)

    def undo_invertible(self, matrix: torch.Tensor) -> torch.Tensor:
        """Undo the invertible operators (``tilt``, ``inflate``, ``addv``) in reverse order and leave the
        noise where it is: the rows an attacker would see who had recovered the secret linear map."""
        with torch.no_grad():
            for op in reversed(self.operators):
                if op.invertible:
                    matrix = op.invert(matrix)
        return matrix

    def invert(self, matrix: torch.Tensor) -> torch.Tensor:
        """Undo the chain; only when every operator is invertible."""
        if not self.invertible:
            raise SettingsError("this vertical chain contains noise operators and cannot be inverted")
        with torch.no_grad():
            for op in reversed(self.operators):
                matrix = op.invert(matrix)
        return matrix


def build_chain(specs, hidden_size: int, scale: float, stream: KeyStream) -> VerticalChain:
    """Bind operator settings (``op``, ``intensity``, ``dimension``) to secret dimensions and parameters."""
    bound = []
    for index, spec in enumerate(specs):
        cls = OPERATORS[spec.op]
        op_stream = stream.child(f"{index}/{spec.op}")
        k = dimension_count(spec.dimension, hidden_size, spec.op)
        dims = op_stream.child("dims").subset(hidden_size, k)
        bound.append(cls(spec.intensity, dims, scale, op_stream))
    return VerticalChain(tuple(bound))
