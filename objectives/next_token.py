"""Language-model tasks: next-token tuning and next-token accuracy under private inference.

Private data is one document per row, or a prompt and its response (the loss covers the response only).
The cloud tunes the shaken causal LM with next-token loss on shaken ids. The owner measures held-out
next-token accuracy by private inference: encode with the key, the cloud returns logits over shaken ids,
the owner decodes them to plaintext scores (log-sum-exp over a homophonic token's copies) and compares
the greedy prediction with the true next plaintext token. Perplexity is recorded beside it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from objectives.data import DataError
from objectives.device import autocast, model_device
from objectives.evaluation import majority_accuracy
from objectives.models import load_tokenizer
from objectives.task import TaskSpec
from objectives.tokens import length_sorted_batches, pad_batch, tokenize
from objectives.tuning import Checkpoint, TuningBudget, TuningRun, train_steps
from operators.key import ShakeKey
from operators.randomness import KeyStream

IGNORE = -100  # label of positions the loss skips
TUNED_COPY_MASS = "sum"  # a tuned model spreads a token's probability over its copies: sum them


def tokenize_documents(
    tokenizer: Any, pairs: Sequence[tuple[str, str]], max_length: int
) -> tuple[list[list[int]], list[int]]:
    """Token ids of every (prompt, text) pair, truncated to ``max_length``, and where each sequence's
    targets start: 1 for a document (every token after the first), the response's first token else."""
    closing = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    end = [closing] if closing is not None else []  # a response ends where a document would
    sequences, loss_from = [], []
    for prompt, text in pairs:
        if prompt:
            head = tokenizer(prompt)["input_ids"]
            body = tokenizer(text, add_special_tokens=False)["input_ids"] + end
            ids, start = (head + body)[:max_length], len(head)
        else:
            ids, start = tokenizer(text, truncation=True, max_length=max_length)["input_ids"], 1
        sequences.append(ids)
        loss_from.append(min(start, max(len(ids) - 1, 1)))
    return sequences, loss_from


def causal_batch(
    sequences: Sequence[Sequence[int]], pad_id: int, loss_from: Sequence[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, attention mask and next-token labels (the ids, with IGNORE on padding and on the
    positions before each sequence's ``loss_from``: a prompt is read, not predicted)."""
    ids, mask = pad_batch(sequences, pad_id)
    labels = ids.masked_fill(mask == 0, IGNORE)
    if loss_from is not None:
        positions = torch.arange(ids.shape[1])
        before = positions[None, :] < torch.as_tensor(list(loss_from))[:, None]
        labels = labels.masked_fill(before, IGNORE)
    return ids, mask, labels


def targets_of(sequences: Sequence[Sequence[int]], loss_from: Sequence[int]) -> list[int]:
    """Every target token (position >= loss_from) of every sequence."""
    return [token for seq, start in zip(sequences, loss_from, strict=True) for token in seq[max(start, 1) :]]


def fine_tune_lm(
    model: nn.Module,
    token_ids: Sequence[Sequence[int]],
    loss_from: Sequence[int],
    budget: TuningBudget,
    pad_id: int,
    seed: int = 0,
    advance: Callable[[int], None] | None = None,
    device: torch.device | None = None,
    checkpoint: Checkpoint | None = None,
) -> TuningRun:
    """Tune a causal LM on (shaken or plaintext) ids with next-token loss on the target positions."""

    def batch_loss(rows: list[int], where: torch.device) -> tuple[torch.Tensor, int]:
        ids, mask, labels = causal_batch([token_ids[i] for i in rows], pad_id, [loss_from[i] for i in rows])
        out = model(input_ids=ids.to(where), attention_mask=mask.to(where), labels=labels.to(where))
        return out.loss, int(mask.sum())

    return train_steps(model, len(token_ids), budget, batch_loss, seed, advance, device, checkpoint)


@dataclass(frozen=True)
class NextTokenScore:
    """Held-out next-token accuracy (greedy) and perplexity over the target positions."""

    accuracy: float
    correct: int
    predictions: int
    perplexity: float


@torch.no_grad()
def evaluate_next_token(
    model: nn.Module,
    token_ids: Sequence[Sequence[int]],
    loss_from: Sequence[int],
    pad_id: int,
    key: ShakeKey | None = None,
    source: KeyStream | None = None,
    batch_size: int = 64,
    advance: Callable[[int], None] | None = None,
    copy_mass: str = TUNED_COPY_MASS,
) -> NextTokenScore:
    """Score ``model`` on plaintext ids; with ``key``, by private inference (inputs encoded with the key,
    outputs decoded to plaintext scores, copies drawn from ``source``: the OS CSPRNG when None)."""
    model.eval()
    where = model_device(model)
    correct = predictions = 0
    nll = 0.0
    for batch in length_sorted_batches([len(s) for s in token_ids], batch_size):
        plain, mask, labels = causal_batch(
            [token_ids[i] for i in batch], pad_id, [loss_from[i] for i in batch]
        )
        if key is not None:
            lengths = [int(n) for n in mask.sum(dim=1).tolist()]
            inputs = key.encode(key.substitute_batch(plain, lengths), source)
        else:
            inputs = plain
        with autocast(where):
            logits = model(input_ids=inputs.to(where), attention_mask=mask.to(where)).logits
        if key is not None:
            logits = key.horizontal.decode_logits(logits, copy_mass=copy_mass)
        log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1).cpu()
        target = labels[:, 1:]
        valid = target != IGNORE
        picked = log_probs.gather(-1, target.clamp_min(0).unsqueeze(-1)).squeeze(-1)
        nll -= float(picked[valid].sum())
        correct += int((log_probs.argmax(-1) == target)[valid].sum())
        predictions += int(valid.sum())
        if advance:
            advance(len(batch))
    mean_nll = nll / max(predictions, 1)
    return NextTokenScore(correct / max(predictions, 1), correct, predictions, math.exp(min(mean_nll, 700.0)))


class Slices(Protocol):
    """How much of each source a trial reads (a trial's Fidelity)."""

    train_size: int
    eval_size: int | None
    max_length: int


@dataclass(frozen=True)
class PreparedLM:
    """A language-model task tokenised once: private documents, evaluation documents, public text."""

    train_ids: list[list[int]]
    train_loss_from: list[int]
    eval_ids: list[list[int]]
    eval_loss_from: list[int]
    public_ids: list[list[int]]
    pad_id: int

    @property
    def baseline_accuracy(self) -> float:
        """Next-token accuracy of always predicting the most common training target."""
        return majority_accuracy(
            targets_of(self.train_ids, self.train_loss_from), targets_of(self.eval_ids, self.eval_loss_from)
        )


@functools.lru_cache(maxsize=8)
def prepare_lm_task(task: TaskSpec, model: str, slices: Slices) -> PreparedLM:
    """Load and tokenise a language-model task (once per process for each task, model and fidelity)."""
    tokenizer = load_tokenizer(model)
    train = task.load_documents(task.train)[: slices.train_size]
    evaluation = task.load_documents(task.eval)[: slices.eval_size]
    train_ids, train_from = tokenize_documents(tokenizer, train, slices.max_length)
    eval_ids, eval_from = tokenize_documents(tokenizer, evaluation, slices.max_length)
    if not targets_of(eval_ids, eval_from):
        raise DataError(
            f"eval source {task.eval} leaves no token to predict at max_length {slices.max_length}"
        )
    return PreparedLM(
        train_ids,
        train_from,
        eval_ids,
        eval_from,
        tokenize(tokenizer, task.load_public(), slices.max_length),
        lm_pad_id(tokenizer),
    )


def lm_pad_id(tokenizer: Any, model: nn.Module | None = None) -> int:
    """The id padding takes: the tokenizer's pad token, else the model's, else its end token, else 0
    (padding is masked and never a target, so any id serves)."""
    config = getattr(model, "config", None)
    for pad in (
        getattr(tokenizer, "pad_token_id", None),
        getattr(config, "pad_token_id", None),
        getattr(config, "eos_token_id", None),
    ):
        if isinstance(pad, int):
            return pad
    return 0
