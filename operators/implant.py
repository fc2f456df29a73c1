"""Key implantation: shake a model's vocabulary tensors in place, E'[pi(i)] = V(M(E)[i]).

M is the key's cluster mixing (:mod:`operators.mixing`; the identity unless the settings mix), V its vertical
chain.

Works on any Hugging Face model with an input embedding. Tied output layers follow automatically; an
untied output embedding gets the same permutation and its own vertical noise; vocabulary-sized biases
are permuted. Any other vocabulary-sized tensor is refused rather than left inconsistent.

A homophonic key grows the vocabulary to one row per copy (``resize_token_embeddings``; a tied head
stays tied and grows with the input embedding): E'[s] = V(E[token of s]) with fresh noise per row, plus
copy noise on tokens with several copies. An untied output embedding gets one row per copy the same way,
with its own vertical noise and its own copy noise; a vocabulary-sized bias gets one entry per copy, each
copy keeping its token's bias. A head without a bias gets none: a per-copy bias of -log k would make the
copies' probabilities sum to the token's, but it would publish each shaken id's copy count, and the counts
are public (they follow from the public frequency prior), so it would single out the copies of frequent
tokens. The shaken head therefore scores every copy with its token's whole logit (exactly so without
noise); :meth:`operators.homophonic.Homophones.decode_logits` merges the copies back (log-sum-exp, and
``copy_mass="mean"`` removes the log k tilt this gives an untuned model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from operators.errors import UnsupportedModelError
from operators.homophonic import Homophones
from operators.horizontal import Permutation
from operators.identity import input_embedding, output_layer, output_weight
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
    output = output_layer(model)
    if output is not None:
        out_weight = output_weight(model)
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
                matrix.copy_(chain.apply(key.mixed_rows(matrix, label), noise_label=label))
    _remap_rows(tensors, key.permutation.rows_to_shaken)
    set_marker(model, "shaken", key)
    return model


def _shake_homophonic(model: nn.Module, key: ShakeKey, tensors: VocabularyTensors) -> nn.Module:
    """One row per copy in the input embedding and in an untied output embedding, each with its own
    vertical noise (and copy noise on multi-copy tokens); one bias entry per copy (its token's)."""
    homophones = key.horizontal
    with torch.no_grad():
        input_rows = _copy_rows(tensors.input_weight, key, "input", "copies")
        output_rows = None
        if tensors.output_weight is not None:
            output_rows = _copy_rows(tensors.output_weight, key, "output", "output-copies")
        biases = [bias.detach().index_select(-1, homophones.plain_of_shaken) for bias in tensors.row_biases]
    _set_vocabulary(model, tensors, input_rows, output_rows, biases)
    set_marker(model, "shaken", key)
    return model


def _copy_rows(matrix: torch.Tensor, key: ShakeKey, label: str, copy_label: str) -> torch.Tensor:
    """Every copy starts as its token's row, then the key's vertical chain (noise stream ``label``) and
    copy noise (stream ``copy_label``), both at this matrix's own scale."""
    homophones = key.horizontal
    scale = embedding_scale(matrix)
    mixed = key.mixed_rows(matrix.detach(), label)
    rows = key.vertical_chain(scale).apply(homophones.rows_to_shaken(mixed), noise_label=label)
    intensity = key.settings.homophones.copy_noise
    return add_copy_noise(rows, homophones, intensity, scale, key, noise_label=copy_label)


def add_copy_noise(
    rows: torch.Tensor,
    homophones: Homophones,
    intensity: float,
    scale: float,
    key: ShakeKey,
    noise_label: str = "copies",
) -> torch.Tensor:
    """Gaussian noise (intensity x scale) on every row of a token with several copies; ``noise_label``
    names the stream ("copies" for the input embedding, another label for an untied output embedding,
    so the two draw independent noise)."""
    if intensity == 0:
        return rows
    multi = torch.nonzero(homophones.copies[homophones.plain_of_shaken] > 1).flatten()
    hidden = rows.shape[1]
    noise = GaussianNoise(intensity, torch.arange(hidden), scale, key.occurrence_stream("copy-noise"))
    out = rows.clone()
    out[multi] = noise.apply(rows[multi], noise_label=noise_label)
    return out


def _set_vocabulary(
    model: nn.Module,
    tensors: VocabularyTensors,
    input_rows: torch.Tensor,
    output_rows: torch.Tensor | None,
    biases: list[torch.Tensor],
) -> None:
    """Give the model exactly these vocabulary tensors (``tensors`` as found before), resizing the model
    when the row count changes: the input embedding, the untied output embedding (``output_rows``, None
    when tied or absent) and every row bias, in the order of ``tensors.row_biases``.

    ``resize_token_embeddings`` grows or shrinks the input embedding, an untied head and known biases,
    and re-ties a tied head; what it left is checked, never assumed."""
    size = int(input_rows.shape[0])
    names = _tensor_names(model)
    bias_names = [names[id(bias)] for bias in tensors.row_biases]
    head_was_tied = tensors.output_weight is None and _output_weight(model) is tensors.input_weight
    if tensors.input_weight.shape[0] != size:
        resize = getattr(model, "resize_token_embeddings", None)
        if resize is None:
            raise UnsupportedModelError(
                f"{type(model).__name__} cannot resize its vocabulary (no resize_token_embeddings)"
            )
        try:
            resize(size, mean_resizing=False)
        except TypeError:  # transformers before mean_resizing
            resize(size)
    weight = input_embedding(model)
    output = _output_weight(model)
    if head_was_tied and output is not weight:
        raise UnsupportedModelError("resizing the vocabulary untied the output embedding from the input")
    if output_rows is not None and (output is None or output is weight or output.shape != output_rows.shape):
        raise UnsupportedModelError(
            f"resizing the vocabulary left the output embedding at "
            f"{None if output is None else tuple(output.shape)}, not {tuple(output_rows.shape)}"
        )
    with torch.no_grad():
        weight.copy_(input_rows)
        if output_rows is not None:
            output.copy_(output_rows)
        for name, values in zip(bias_names, biases, strict=True):
            current = _tensor_at(model, name)
            if current.shape == values.shape:
                current.copy_(values)
            else:  # a bias the resize did not touch: replace its values in place (ties keep holding)
                current.data = values.to(current.dtype).to(current.device)


def _output_weight(model: nn.Module) -> torch.Tensor | None:
    getter = getattr(model, "get_output_embeddings", None)
    output = getter() if getter else None
    return getattr(output, "weight", None)


def _tensor_names(model: nn.Module) -> dict[int, str]:
    return {id(t): name for name, t in [*model.named_parameters(), *model.named_buffers()]}


def _tensor_at(model: nn.Module, name: str) -> torch.Tensor:
    owner, _, attribute = name.rpartition(".")
    return getattr(model.get_submodule(owner), attribute)


def unpermute_model(model: nn.Module, horizontal: Permutation | Homophones) -> nn.Module:
    """Move every vocabulary row pi(i) back to row i, in place. For homophones, row i of the input
    embedding, of an untied output embedding and entry i of every row bias become the mean of token i's
    copies, and the model shrinks back to the plaintext vocabulary (a tied head stays tied)."""
    tensors = vocabulary_tensors(model)
    if isinstance(horizontal, Homophones):
        with torch.no_grad():
            input_rows = horizontal.rows_to_plain(tensors.input_weight.detach())
            output_rows = None
            if tensors.output_weight is not None:
                output_rows = horizontal.rows_to_plain(tensors.output_weight.detach())
            biases = [_mean_over_copies(bias.detach(), horizontal) for bias in tensors.row_biases]
        _set_vocabulary(model, tensors, input_rows, output_rows, biases)
        return model
    _remap_rows(tensors, horizontal.rows_to_plain)
    return model


def _mean_over_copies(bias: torch.Tensor, homophones: Homophones) -> torch.Tensor:
    """A bias over shaken ids (last dim) -> over plaintext ids, each entry the mean of its copies'."""
    flat = bias.reshape(-1, bias.shape[-1])
    return homophones.rows_to_plain(flat.T).T.reshape(*bias.shape[:-1], homophones.plain_size)
