"""Fine-tuning a sequence classifier on token ids: what the cloud does with the shaken upload.

The same function tunes a plaintext model (the reference) and a shaken model on shaken ids (private
tuning): the cloud cannot tell the difference, and neither can this code.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TypeVar

import torch
from torch import nn

from objectives.device import autocast, model_device
from objectives.tokens import pad_batch
from operators.errors import SettingsError

# "body": every weight but the input embedding; the shaken rows the cloud holds stay as uploaded
TUNING_MODES = ("full", "embeddings+head", "body")


def check_step_budget(
    steps: int, batch_size: int, learning_rate: float, error: type[Exception] = ValueError, prefix: str = ""
) -> None:
    """The checks every training budget shares: steps >= 0, batch_size >= 1, learning rate in (0, 1)."""
    if steps < 0:
        raise error(f"{prefix}steps must be >= 0, got {steps}")
    if batch_size < 1:
        raise error(f"{prefix}batch_size must be >= 1, got {batch_size}")
    if not 0 < learning_rate < 1:
        raise error(f"{prefix}learning_rate must be in (0, 1), got {learning_rate}")


Budget = TypeVar("Budget")


def budget_from_dict(cls: type[Budget], data: Any, section: str) -> Budget:
    """A budget dataclass from its section of a settings file; anything wrong is a SettingsError."""
    if not isinstance(data, dict):
        raise SettingsError(f"{section} must be an object")
    unknown = sorted(set(data) - set(cls.__dataclass_fields__))  # type: ignore[attr-defined]
    if unknown:
        raise SettingsError(f"unknown field(s) in {section}: {', '.join(unknown)}")
    try:
        return cls(**data)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{section}: {exc}") from None


@dataclass(frozen=True)
class TuningBudget:
    """How much private tuning a trial may spend: more steps heal more noise and cost more."""

    steps: int = 150
    batch_size: int = 16
    learning_rate: float = 5e-5
    mode: str = "full"

    def __post_init__(self) -> None:
        check_step_budget(self.steps, self.batch_size, self.learning_rate)
        if self.mode not in TUNING_MODES:
            raise ValueError(f"mode must be one of {', '.join(TUNING_MODES)}, got {self.mode!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TuningRun:
    """What a tuning run did: steps taken, examples and tokens processed, the loss at the end."""

    steps: int
    examples: int
    tokens: int
    final_loss: float
    seconds: float


HEAD_PREFIXES = ("classifier", "score", "pre_classifier")


def without_input_embedding(model: nn.Module) -> list[nn.Parameter]:
    """Every weight of ``model`` except its input embedding (a tied output layer stays frozen with it)."""
    embedding = model.get_input_embeddings().weight
    return [p for p in model.parameters() if p is not embedding]


def _trainable(model: nn.Module, mode: str) -> list[nn.Parameter]:
    """``full``: every weight; ``embeddings+head``: the input embedding, the pooler and the classifier;
    ``body``: every weight but the input embedding."""
    if mode == "full":
        chosen = list(model.parameters())
    elif mode == "body":
        chosen = without_input_embedding(model)
    else:
        embedding = model.get_input_embeddings().weight
        head = [
            p
            for name, p in model.named_parameters()
            if name.startswith(HEAD_PREFIXES) or ".pooler." in f".{name}"
        ]
        chosen = [embedding, *head]
    keep = {id(p) for p in chosen}
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in keep)
    return chosen


def adamw(parameters: Sequence[nn.Parameter], learning_rate: float) -> torch.optim.Optimizer:
    """AdamW with the fused kernel where the device has one (about 4x faster on CPU for the large
    embedding matrix); the same update rule, element by element, so permuted rows stay permuted."""
    parameters = list(parameters)
    try:
        return torch.optim.AdamW(parameters, lr=learning_rate, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
        return torch.optim.AdamW(parameters, lr=learning_rate)


class StepBudget(Protocol):
    steps: int
    batch_size: int


def batch_plan(examples: int, budget: StepBudget, seed: int = 0) -> list[list[int]]:
    """The example indices of every step: seeded reshuffles, epoch after epoch (known before training)."""
    if examples == 0:
        raise ValueError("no training examples")
    order = torch.Generator().manual_seed(seed)
    plan, pending = [], []
    for _ in range(budget.steps):
        while len(pending) < budget.batch_size:
            pending += torch.randperm(examples, generator=order).tolist()
        plan.append(pending[: budget.batch_size])
        pending = pending[budget.batch_size :]
    return plan


def fine_tune(
    model: nn.Module,
    token_ids: Sequence[Sequence[int]],
    labels: Sequence[int],
    budget: TuningBudget,
    pad_id: int,
    seed: int = 0,
    advance: Callable[[int], None] | None = None,
    device: torch.device | None = None,
) -> TuningRun:
    """Train ``model`` in place on the batches of :func:`batch_plan`, on ``device`` (moved there once;
    None: where it is), under mixed precision where the device supports it."""
    if device is not None:
        model.to(device)
    where = model_device(model)
    plan = batch_plan(len(token_ids), budget, seed)
    torch.manual_seed(seed)  # dropout
    optimiser = adamw(_trainable(model, budget.mode), budget.learning_rate)
    model.train()
    started, tokens, loss_value = time.perf_counter(), 0, float("nan")
    for rows in plan:
        ids, mask = pad_batch([token_ids[i] for i in rows], pad_id)
        target = torch.as_tensor([labels[i] for i in rows])
        with autocast(where):
            loss = model(input_ids=ids.to(where), attention_mask=mask.to(where), labels=target.to(where)).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)
        tokens += int(mask.sum())
        loss_value = float(loss.detach())
        if advance:
            advance(1)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    seconds = time.perf_counter() - started
    return TuningRun(budget.steps, budget.steps * budget.batch_size, tokens, loss_value, seconds)
