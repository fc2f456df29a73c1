"""Fingerprints of the model and vocabulary a key is made for, so a key is never applied to another."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from operators.errors import KeyFileError, UnsupportedModelError


def input_embedding(model: nn.Module) -> torch.Tensor:
    """The model's input embedding matrix (vocabulary rows x hidden size)."""
    getter = getattr(model, "get_input_embeddings", None)
    embedding = getter() if getter else None
    weight = getattr(embedding, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise UnsupportedModelError(
            f"{type(model).__name__} has no input embedding matrix (get_input_embeddings().weight)"
        )
    return weight


def output_layer(model: nn.Module) -> nn.Module | None:
    """The model's vocabulary output layer (a language-model head), or None (e.g. a classifier)."""
    getter = getattr(model, "get_output_embeddings", None)
    return getter() if getter else None


def output_weight(model: nn.Module) -> torch.Tensor | None:
    """The weight of the model's vocabulary output layer (the input embedding itself when tied), or None."""
    weight = getattr(output_layer(model), "weight", None)
    return weight if isinstance(weight, torch.Tensor) else None


def tensor_sha256(tensor: torch.Tensor) -> str:
    """SHA-256 of a tensor's values (float32, row-major)."""
    array = tensor.detach().to("cpu", torch.float32).contiguous().numpy()
    return hashlib.sha256(memoryview(array).cast("B")).hexdigest()


def vocabulary_sha256(tokenizer: Any) -> str:
    """SHA-256 of the tokenizer's token -> id table."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    return hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode()).hexdigest()


def vocabulary_tokens(tokenizer: Any, size: int) -> list[str]:
    """The token string of every id below ``size`` ("" for ids the tokenizer does not know)."""
    known = min(size, len(tokenizer))
    tokens = [str(t) if t is not None else "" for t in tokenizer.convert_ids_to_tokens(list(range(known)))]
    return tokens + [""] * (size - known)


def special_token_ids(tokenizer: Any, vocab_size: int) -> tuple[int, ...]:
    """Ids the permutation keeps fixed: the tokenizer's special tokens."""
    return tuple(sorted({int(i) for i in tokenizer.all_special_ids if 0 <= int(i) < vocab_size}))


@dataclass(frozen=True)
class ModelIdentity:
    """What a key was made for: architecture, vocabulary and the public pretrained embedding."""

    name: str
    model_type: str
    hidden_size: int
    vocab_size: int
    embedding_sha256: str
    vocab_sha256: str
    special_ids: tuple[int, ...]

    @classmethod
    def of(cls, model: nn.Module, tokenizer: Any, name: str) -> ModelIdentity:
        weight = input_embedding(model)
        return cls(
            name=str(name),
            model_type=str(getattr(model.config, "model_type", type(model).__name__)),
            hidden_size=int(weight.shape[1]),
            vocab_size=int(weight.shape[0]),
            embedding_sha256=tensor_sha256(weight),
            vocab_sha256=vocabulary_sha256(tokenizer),
            special_ids=special_token_ids(tokenizer, int(weight.shape[0])),
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["special_ids"] = list(self.special_ids)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> ModelIdentity:
        try:
            identity = cls(
                name=_typed(data["name"], str),
                model_type=_typed(data["model_type"], str),
                hidden_size=_typed(data["hidden_size"], int),
                vocab_size=_typed(data["vocab_size"], int),
                embedding_sha256=_typed(data["embedding_sha256"], str),
                vocab_sha256=_typed(data["vocab_sha256"], str),
                special_ids=tuple(_typed(i, int) for i in data["special_ids"]),
            )
        except (KeyError, TypeError, ValueError):
            raise KeyFileError("key file's model section is incomplete or malformed") from None
        if identity.vocab_size < 2 or identity.hidden_size < 1:
            raise KeyFileError("key file's model section has impossible sizes")
        if any(not 0 <= i < identity.vocab_size for i in identity.special_ids):
            raise KeyFileError("key file's special token ids lie outside its vocabulary")
        return identity


def _typed(value: Any, kind: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError
    return value
