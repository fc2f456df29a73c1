"""Recovery: turn a (tuned) shaken model into one that reads plaintext ids.

Only the permutation is undone; vertical transforms stay baked in because the network was tuned on them.
For a 1:1 key the promise is exact: recovered(x) == tuned_shaken(encode(x)), with vocabulary outputs in
plaintext order (equal up to float rounding of the reordered matmul).

For a homophonic key every token's copies are merged and the model shrinks back to the plaintext
vocabulary (a tied head stays tied): row i of the input embedding and of an untied output embedding, and
entry i of every vocabulary bias, is the mean over token i's copies. What holds:
- while a token's copies are equal (no vertical or copy noise, no tuning) the merge is exact: recovered(x)
  == shaken(encode(x)) for every copy choice, and recovered vocabulary logits equal
  ``decode_logits(shaken logits, copy_mass="mean")`` (and the plaintext model's, for an untuned model);
- once noise or tuning has moved the copies apart it is an approximation, measured, not promised
  (bench/bench_homophonic.py; tests/test_homophonic_lm.py). A merged head row scores token i with the
  mean of its copies' logits (the head is linear), which for the same hidden state is at most
  ``decode_logits(..., copy_mass="mean")`` = ``decode_logits(..., "sum") - log k_i``, with equality only
  when the copies' logits agree. A model tuned on shaken text spreads token i over its k_i copies, so its
  recovered head under-scores frequent tokens by about log k_i; no bias is added to correct that
  (GPT-2 and Llama heads have none).
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
