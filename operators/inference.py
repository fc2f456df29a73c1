"""Private inference: encode with the key, run the shaken model, decode vocabulary outputs."""

from __future__ import annotations

import torch
from torch import nn

from operators.key import ShakeKey


def has_vocabulary_output(model: nn.Module) -> bool:
    """Whether the model's logits are indexed by vocabulary id (a language-model head)."""
    getter = getattr(model, "get_output_embeddings", None)
    return getter is not None and getter() is not None


def private_logits(
    model: nn.Module, key: ShakeKey, input_ids: torch.Tensor, **inputs: torch.Tensor
) -> torch.Tensor:
    """Logits for plaintext ``input_ids`` computed by the shaken ``model`` on encoded ids.

    Vocabulary-sized outputs come back in plaintext order, so they compare directly with the
    plaintext model's.
    """
    permutation = key.permutation
    logits = model(input_ids=permutation.encode(input_ids), **inputs).logits
    if has_vocabulary_output(model):
        logits = permutation.decode_logits(logits)
    return logits
