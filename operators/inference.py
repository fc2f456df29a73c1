"""Private inference: encode with the key, run the shaken model, decode vocabulary outputs."""

from __future__ import annotations

import torch
from torch import nn

from operators.identity import input_embedding, output_layer
from operators.key import ShakeKey
from operators.randomness import KeyStream


def has_vocabulary_output(model: nn.Module) -> bool:
    """Whether the model's logits are indexed by vocabulary id (a language-model head)."""
    return output_layer(model) is not None


def private_logits(
    model: nn.Module,
    key: ShakeKey,
    input_ids: torch.Tensor,
    source: KeyStream | None = None,
    *,
    copy_mass: str = "sum",
    **inputs: torch.Tensor,
) -> torch.Tensor:
    """Logits for plaintext ``input_ids`` computed by the shaken ``model`` on encoded ids.

    A key that substitutes substitutes the query first, as an upload (the attention mask gives each row's
    length). A homophonic key draws each occurrence's copy from ``source`` (None: the OS CSPRNG).
    Vocabulary-sized outputs come back over plaintext ids, so they compare directly with the plaintext
    model's: reordered for a 1:1 key, and for a homophonic key merged over each token's copies by log-sum-exp
    (``copy_mass``: "sum" for a model tuned on shaken text, "mean" for a freshly implanted one; see
    :meth:`operators.homophonic.Homophones.decode_logits`; a 1:1 key ignores it).
    """
    mask = inputs.get("attention_mask")
    lengths = None if mask is None else [int(n) for n in mask.sum(dim=1).tolist()]
    plain = key.substitute_batch(input_ids, lengths)  # a query is substituted as an upload would be
    encoded = key.encode(plain, source)  # on the ids' device (the CPU: keys are exact there)
    logits = model(input_ids=encoded.to(input_embedding(model).device), **inputs).logits
    if has_vocabulary_output(model):
        logits = key.horizontal.decode_logits(logits, copy_mass=copy_mass)
    return logits
