"""Key implantation: shake a model's vocabulary tensors in place, E'[pi(i)] = V(E[i]).

Works on any Hugging Face model with an input embedding. Tied output layers follow automatically; an
untied output embedding gets the same permutation and its own vertical noise; vocabulary-sized biases
are permuted. Any other vocabulary-sized tensor is refused rather than left inconsistent.

A homophonic key grows the input embedding to one row per copy, E'[s] = V(E[token of s]) with fresh
noise per row; it is refused for models with vocabulary outputs (a language-model head would have to
score every copy of a token as that token, which plain logits cannot express).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from operators.errors import UnsupportedModelError
from operators.homophonic import Homophones
from operators.horizontal import Permutation
from operators.identity import input_embedding
from operators.inference import has_vocabulary_output
from operators.key import ShakeKey, set_marker
from operators.vertical import GaussianNoise, embedding_scale


@dataclass
class VocabularyTensors:
    """Every tensor of a model indexed by vocabulary id."""

    input_weight: torch.Tensor
    output_weight: torch.Tensor | None = None  # only when not tied to the input embedding
    row_biases: list[torch.Tensor] = field(default_factory=list)  # vocabulary on the last dim


def vocabulary_tensors(model: nn.Module) -> VocabularyTensors:
    """Find the vocabulary tensors; refuse models with vocabulary-sized tensors we do not know."""
    weight = input_embedding(model)
    vocab_size = weight.shape[0]
    found = VocabularyTensors(weight)
    getter = getattr(model, "get_output_embeddings", None)
    output = getter() if getter else None
    if output is not None:
        out_weight = getattr(output, "weight", None)
        if out_weight is not None and out_weight is not weight:
            if tuple(out_weight.shape) != tuple(weight.shape):
                raise UnsupportedModelError(
                    f"output embedding shape {tuple(out_weight.shape)} differs from the input "
                    f"embedding {tuple(weight.shape)}"
                )
            found.output_weight = out_weight
        bias = getattr(output, "bias", None)
        if bias is not None:
            found.row_biases.append(bias)
    for name, buffer in model.named_buffers():
        if name.endswith("final_logits_bias") and buffer.shape[-1] == vocab_size:
            found.row_biases.append(buffer)
    known = {id(weight), id(found.output_weight), *(id(b) for b in found.row_biases)}
    unknown = [
        name
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]
        if id(tensor) not in known and tensor.dim() > 0 and vocab_size in (tensor.shape[0], tensor.shape[-1])
    ]
    if unknown:
        raise UnsupportedModelError(
            "model has vocabulary-sized tensors shaketune does not know how to permute: "
            + ", ".join(unknown[:5])
        )
    return found


def _remap_rows(tensors: VocabularyTensors, rows: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Apply a row reordering to every vocabulary tensor (biases along their last dimension)."""
    with torch.no_grad():
        for matrix in (tensors.input_weight, tensors.output_weight):
            if matrix is not None:
                matrix.copy_(rows(matrix))
        for bias in tensors.row_biases:
            moved = rows(bias.reshape(-1, bias.shape[-1]).T).T
            bias.copy_(moved.reshape(bias.shape))


def shake_model(model: nn.Module, key: ShakeKey) -> nn.Module:
    """Implant ``key`` into the plaintext ``model`` in place (and return it)."""
    key.check_pretrained(model)
    tensors = vocabulary_tensors(model)
    if key.homophonic:
        return _shake_homophonic(model, key, tensors)
    with torch.no_grad():
        for matrix, label in ((tensors.input_weight, "input"), (tensors.output_weight, "output")):
            if matrix is not None:
                chain = key.vertical_chain(embedding_scale(matrix))
                matrix.copy_(chain.apply(matrix, noise_label=label))
    _remap_rows(tensors, key.permutation.rows_to_shaken)
    set_marker(model, "shaken", key)
    return model


def _shake_homophonic(model: nn.Module, key: ShakeKey, tensors: VocabularyTensors) -> nn.Module:
    """One row per copy, each with its own vertical noise (and copy noise on multi-copy tokens)."""
    if tensors.output_weight is not None or tensors.row_biases or has_vocabulary_output(model):
        raise UnsupportedModelError(
            "homophonic keys shake models without a vocabulary output layer (e.g. sequence "
            "classifiers); this model has a language-model head"
        )
    homophones = key.horizontal
    weight = tensors.input_weight.detach()
    scale = embedding_scale(weight)
    with torch.no_grad():
        rows = key.vertical_chain(scale).apply(homophones.rows_to_shaken(weight), noise_label="input")
        rows = add_copy_noise(rows, homophones, key.settings.homophones.copy_noise, scale, key)
    _set_input_rows(model, rows)
    set_marker(model, "shaken", key)
    return model


def add_copy_noise(
    rows: torch.Tensor, homophones: Homophones, intensity: float, scale: float, key: ShakeKey
) -> torch.Tensor:
    """Gaussian noise (intensity x scale) on every row of a token with several copies."""
    if intensity == 0:
        return rows
    multi = torch.nonzero(homophones.copies[homophones.plain_of_shaken] > 1).flatten()
    hidden = rows.shape[1]
    noise = GaussianNoise(intensity, torch.arange(hidden), scale, key.occurrence_stream("copy-noise"))
    out = rows.clone()
    out[multi] = noise.apply(rows[multi], noise_label="copies")
    return out


def _set_input_rows(model: nn.Module, rows: torch.Tensor) -> None:
    """Give the model an input embedding of exactly ``rows`` (resizing it when the count differs)."""
    if input_embedding(model).shape[0] != rows.shape[0]:
        try:
            model.resize_token_embeddings(rows.shape[0], mean_resizing=False)
        except TypeError:  # transformers before mean_resizing
            model.resize_token_embeddings(rows.shape[0])
    with torch.no_grad():
        input_embedding(model).copy_(rows)


def unpermute_model(model: nn.Module, horizontal: Permutation | Homophones) -> nn.Module:
    """Move every vocabulary row pi(i) back to row i, in place; for homophones, row i becomes the mean
    of its copies' rows and the embedding shrinks back to the vocabulary."""
    if isinstance(horizontal, Homophones):
        _set_input_rows(model, horizontal.rows_to_plain(input_embedding(model).detach()))
        return model
    _remap_rows(vocabulary_tensors(model), horizontal.rows_to_plain)
    return model
