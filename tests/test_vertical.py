"""Each vertical operator: scales with intensity, touches only its dimensions, inverts when it can."""

import math

import pytest
import torch

from operators.randomness import KeyStream
from operators.settings import OperatorSettings
from operators.vertical import OPERATORS, build_chain, embedding_scale

ROWS, HIDDEN = 3000, 64
SEED = b"\x07" * 32


@pytest.fixture(scope="module")
def matrix() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(ROWS, HIDDEN, generator=g) * 0.05 + 0.01


def bind(op: str, intensity: float, dimension: float, matrix: torch.Tensor, seed: bytes = SEED):
    spec = OperatorSettings(op, intensity, dimension)
    return build_chain([spec], HIDDEN, embedding_scale(matrix), KeyStream(seed, "vertical")).operators[0]


@pytest.mark.parametrize("op", list(OPERATORS))
def test_effect_grows_with_intensity_and_vanishes_at_zero(op, matrix):
    assert torch.equal(bind(op, 0.0, 1.0, matrix).apply(matrix), matrix)
    shifts = [(bind(op, t, 1.0, matrix).apply(matrix) - matrix).norm().item() for t in (0.2, 0.5, 1.0)]
    assert shifts[0] > 0
    assert shifts[0] < shifts[1] < shifts[2], shifts


@pytest.mark.parametrize("op", list(OPERATORS))
def test_touches_only_its_secret_dimensions(op, matrix):
    bound = bind(op, 1.0, 0.25, matrix)
    assert bound.k == 16
    out = bound.apply(matrix)
    untouched = torch.ones(HIDDEN, dtype=torch.bool)
    untouched[bound.dims] = False
    assert torch.equal(out[:, untouched], matrix[:, untouched])
    assert (out[:, bound.dims] != matrix[:, bound.dims]).float().mean() > 0.99
    # the dimensions are secret: another seed picks others
    assert not torch.equal(bind(op, 1.0, 0.25, matrix, seed=b"\x08" * 32).dims, bound.dims)


@pytest.mark.parametrize("op", [name for name, cls in OPERATORS.items() if cls.invertible])
@pytest.mark.parametrize("dimension", [0.5, 1.0])
def test_invertible_operators_invert(op, dimension, matrix):
    bound = bind(op, 1.0, dimension, matrix)
    restored = bound.invert(bound.apply(matrix))
    # float32 arithmetic: exact up to rounding of values of size ~0.2
    torch.testing.assert_close(restored, matrix, rtol=0, atol=2e-6)


@pytest.mark.parametrize("op", [name for name, cls in OPERATORS.items() if not cls.invertible])
def test_noise_operators_refuse_to_invert(op, matrix):
    with pytest.raises(NotImplementedError):
        bind(op, 1.0, 1.0, matrix).invert(matrix)


@pytest.mark.parametrize("op", ["gaussian", "laplace"])
def test_entrywise_noise_has_the_stated_standard_deviation(op, matrix):
    scale = embedding_scale(matrix)
    noise = bind(op, 2.0, 1.0, matrix).apply(matrix) - matrix
    assert noise.std().item() == pytest.approx(2.0 * scale, rel=0.02)
    excess_kurtosis = ((noise - noise.mean()) ** 4).mean() / noise.var() ** 2 - 3
    assert excess_kurtosis.item() == pytest.approx(0.0 if op == "gaussian" else 3.0, abs=0.3)


def test_dx_privacy_noise_radius_and_direction(matrix):
    scale = embedding_scale(matrix)
    bound = bind("dx-fixp", 1.5, 1.0, matrix)
    noise = bound.apply(matrix) - matrix
    radius = noise.norm(dim=1)
    # radius ~ Gamma(k, 1/epsilon): mean k/epsilon = intensity * scale * sqrt(k), sd sqrt(k)/epsilon
    assert radius.mean().item() == pytest.approx(1.5 * scale * math.sqrt(HIDDEN), rel=0.02)
    assert radius.std().item() == pytest.approx(math.sqrt(HIDDEN) / bound.epsilon, rel=0.1)
    directions = noise / radius.unsqueeze(1)
    assert directions.mean(dim=0).norm().item() < 0.1  # uniform on the sphere


def test_addv_adds_one_vector_and_inflate_scales_columns(matrix):
    addv = bind("addv", 1.0, 1.0, matrix)
    shift = addv.apply(matrix) - matrix
    torch.testing.assert_close(shift, shift[:1].expand_as(shift), rtol=0, atol=1e-7)
    inflate = bind("inflate", 1.0, 1.0, matrix)
    ratio = inflate.apply(matrix) / matrix
    torch.testing.assert_close(ratio, ratio[:1].expand_as(ratio), rtol=1e-5, atol=0)


def test_tilt_is_a_rotation(matrix):
    tilt = bind("tilt", 1.0, 0.5, matrix)
    q = tilt.rotation
    torch.testing.assert_close(q @ q.T, torch.eye(tilt.k), rtol=0, atol=1e-5)
    out = tilt.apply(matrix)
    torch.testing.assert_close(out.norm(dim=1), matrix.norm(dim=1), rtol=1e-5, atol=0)


def test_chain_is_deterministic_and_noise_differs_per_matrix(matrix):
    specs = [OperatorSettings("tilt", 1.0, 0.5), OperatorSettings("gaussian", 1.0, 1.0)]
    scale = embedding_scale(matrix)

    def chain():
        return build_chain(specs, HIDDEN, scale, KeyStream(SEED, "vertical"))

    assert torch.equal(chain().apply(matrix), chain().apply(matrix))
    assert not torch.equal(chain().apply(matrix, "input"), chain().apply(matrix, "output"))


def test_operators_apply_in_order(matrix):
    specs = [OperatorSettings("addv", 1.0, 1.0), OperatorSettings("inflate", 1.0, 1.0)]
    scale = embedding_scale(matrix)
    chain = build_chain(specs, HIDDEN, scale, KeyStream(SEED, "vertical"))
    addv, inflate = chain.operators
    assert torch.equal(chain.apply(matrix), inflate.apply(addv.apply(matrix)))
    torch.testing.assert_close(chain.invert(chain.apply(matrix)), matrix, rtol=0, atol=2e-6)


def test_undoing_the_invertible_operators_leaves_exactly_the_noise(matrix):
    """The informed-adversary view: tilt and inflate undone, the gaussian noise between them left in place
    (rotated back by the tilt's inverse, so still N(0, (intensity x scale)^2) per entry)."""
    scale = embedding_scale(matrix)
    specs = [OperatorSettings("tilt", 1.5, 1.0), OperatorSettings("gaussian", 2.0, 1.0)]
    specs.append(OperatorSettings("inflate", 0.5, 1.0))
    chain = build_chain(specs, HIDDEN, scale, KeyStream(SEED, "vertical"))
    residual = chain.undo_invertible(chain.apply(matrix)) - matrix
    assert float(residual.std()) == pytest.approx(2.0 * scale, rel=0.02)
    assert abs(float(torch.corrcoef(torch.stack([residual.flatten(), matrix.flatten()]))[0, 1])) < 0.02
    invertible = build_chain(specs[::2], HIDDEN, scale, KeyStream(SEED, "vertical"))
    assert torch.allclose(invertible.undo_invertible(invertible.apply(matrix)), matrix, atol=1e-5)
    noise_only = build_chain(specs[1:2], HIDDEN, scale, KeyStream(SEED, "vertical"))
    assert torch.equal(noise_only.undo_invertible(matrix), matrix)
