"""Recovery: turn a (tuned) shaken model into one that reads plaintext ids.

Only the permutation is undone; vertical transforms stay baked in because the network was tuned on them.
The promise: recovered(x) == tuned_shaken(encode(x)), with vocabulary outputs in plaintext order. For a
homophonic key each token's row is the mean of its tuned copies: exact while the copies are equal,
an approximation once tuning has moved them apart (benchmarked in bench/bench_homophonic.py).
"""

from __future__ import annotations

from torch import nn

from operators.implant import unpermute_model
from operators.key import ShakeKey, set_marker


def recover_model(model: nn.Module, key: ShakeKey) -> list[str]:
    """Recover ``model`` (shaken with ``key``) in place; returns warnings, e.g. an unmarked model."""
    warnings = key.check_shaken(model)
    unpermute_model(model, key.horizontal)
    set_marker(model, "recovered", key)
    return warnings
