"""Recovery: turn a (tuned) shaken model into one that reads plaintext ids.

Only the permutation is undone; vertical transforms stay baked in because the network was tuned on them.
The promise: recovered(x) == tuned_shaken(encode(x)), with vocabulary outputs in plaintext order.
"""

from __future__ import annotations

from torch import nn

from operators.implant import unpermute_model
from operators.key import ShakeKey, set_marker


def recover_model(model: nn.Module, key: ShakeKey) -> list[str]:
    """Recover ``model`` (shaken with ``key``) in place; returns warnings, e.g. an unmarked model."""
    warnings = key.check_shaken(model)
    unpermute_model(model, key.permutation)
    set_marker(model, "recovered", key)
    return warnings
