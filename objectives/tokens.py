"""Tokenised examples: token ids per sentence, padded into batches on demand."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

DEFAULT_MAX_LENGTH = 128


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int = DEFAULT_MAX_LENGTH) -> list[list[int]]:
    """Token ids of each text, special tokens included, truncated to ``max_length``."""
    if max_length < 2:
        raise ValueError("max_length must be at least 2 (room for the special tokens)")
    return tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]


def map_token_ids(
    token_ids: Sequence[Sequence[int]], mapping: Callable[[torch.Tensor], torch.Tensor]
) -> list[list[int]]:
    """Apply an id-to-id ``mapping`` to every id of every sequence in one call, keeping the sequences."""
    flat = torch.as_tensor([i for seq in token_ids for i in seq], dtype=torch.long)
    pieces = mapping(flat).split([len(seq) for seq in token_ids])
    return [piece.tolist() for piece in pieces]


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and the attention mask for one batch."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Index batches of similar length (less padding, same results: order does not matter)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]
