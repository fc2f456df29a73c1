"""Accuracy of a sequence classifier, in plaintext or by private inference with a key."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from objectives.data import DataError
from objectives.device import autocast, model_device
from objectives.tokens import length_sorted_batches, pad_batch
from operators.inference import private_logits
from operators.key import ShakeKey
from operators.randomness import KeyStream


@dataclass(frozen=True)
class Accuracy:
    """Share of examples whose predicted label is the true one."""

    accuracy: float
    correct: int
    examples: int


def label_indices(labels: Sequence[Any], config: Any) -> list[int]:
    """Map data labels (ints or strings) onto the model's label ids, or explain why they do not fit."""
    num_labels = int(config.num_labels)
    if all(isinstance(label, int) for label in labels):
        bad = sorted({label for label in labels if not 0 <= label < num_labels})
        if bad:
            raise DataError(f"labels {bad[:5]} are outside the model's {num_labels} classes")
        return list(labels)
    label2id = {str(name): int(index) for name, index in (config.label2id or {}).items()}
    unknown = sorted({str(label) for label in labels} - set(label2id))
    if unknown:
        raise DataError(
            f"labels {unknown[:5]} are not among the model's labels ({', '.join(sorted(label2id))})"
        )
    return [label2id[str(label)] for label in labels]


def majority_accuracy(train_answers: Sequence[Any], eval_answers: Sequence[Any]) -> float:
    """Accuracy on ``eval_answers`` of always giving the most common of ``train_answers`` (a label, or a
    next token): the baseline a model must beat to have learnt anything."""
    if not train_answers or not eval_answers:
        return 0.0
    common = Counter(train_answers).most_common(1)[0][0]
    return sum(answer == common for answer in eval_answers) / len(eval_answers)


@torch.no_grad()
def evaluate_accuracy(
    model: nn.Module,
    token_ids: Sequence[Sequence[int]],
    labels: Sequence[int],
    pad_id: int,
    key: ShakeKey | None = None,
    batch_size: int = 64,
    advance: Callable[[int], None] | None = None,
    source: KeyStream | None = None,
    device: torch.device | None = None,
) -> Accuracy:
    """Accuracy of ``model`` on tokenised examples; with ``key``, by private inference (a homophonic
    key's copy choices come from ``source``, the OS CSPRNG when None). The model moves to ``device``
    once (None: it stays where it is); ids are encoded on the CPU, then moved."""
    if device is not None:
        model.to(device)
    where = model_device(model)
    model.eval()
    correct = 0
    for batch in length_sorted_batches([len(s) for s in token_ids], batch_size):
        ids, mask = pad_batch([token_ids[i] for i in batch], pad_id)
        with autocast(where):
            if key is None:
                logits = model(input_ids=ids.to(where), attention_mask=mask.to(where)).logits
            else:
                logits = private_logits(model, key, ids, source, attention_mask=mask.to(where))
        truth = torch.as_tensor([labels[i] for i in batch])
        correct += int((logits.argmax(dim=-1).cpu() == truth).sum())
        if advance:
            advance(len(batch))
    examples = len(token_ids)
    return Accuracy(correct / examples if examples else 0.0, correct, examples)
