"""The key stream: deterministic per seed and label, well distributed, never 0 or 1."""

import torch

from operators.randomness import KeyStream


def test_uniforms_lie_strictly_inside_the_unit_interval():
    u = KeyStream(b"\x01" * 32, "u").uniform(2_000_000)
    assert u.min().item() > 0.0 and u.max().item() < 1.0
    assert abs(u.mean().item() - 0.5) < 1e-3


def test_normals_have_unit_moments():
    z = KeyStream(b"\x02" * 32, "z").normal(1_000_001)
    assert z.numel() == 1_000_001
    assert abs(z.mean().item()) < 5e-3 and abs(z.std().item() - 1.0) < 5e-3
    assert torch.isfinite(z).all()


def test_streams_are_deterministic_and_separated_by_label_and_draw():
    a, b = KeyStream(b"\x03" * 32, "x"), KeyStream(b"\x03" * 32, "x")
    assert a.random_bytes(64) == b.random_bytes(64)
    assert a.random_bytes(64) != KeyStream(b"\x03" * 32, "x").random_bytes(64)  # next draw differs
    assert KeyStream(b"\x03" * 32, "x").child("y").random_bytes(32) != KeyStream(
        b"\x03" * 32, "x/z"
    ).random_bytes(32)
    assert "\\x03" not in repr(a)
