"""Fine-tuning on token ids: what the cloud does with the shaken upload.

The same functions tune a plaintext model (the reference) and a shaken model on shaken ids (private
tuning): the cloud cannot tell the difference, and neither can this code. :func:`train_steps` is the
loop every task kind shares; :func:`fine_tune` is the sequence classifier's loss.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TypeVar

import torch
from torch import nn

from objectives.device import autocast, model_device
from objectives.lora import AUTO_TARGETS, lora_adapters
from objectives.tokens import pad_batch
from operators.errors import SettingsError

# "body": every weight but the input embedding; the shaken rows the cloud holds stay as uploaded;
# "lora": low-rank adapters beside frozen weights (objectives/lora.py), merged after training
TUNING_MODES = ("full", "embeddings+head", "body", "lora")
LORA_FIELDS = ("lora_rank", "lora_alpha", "lora_targets")


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
    lora_rank: int = 8  # mode "lora" only: adapter rank, scale alpha / rank, target module names
    lora_alpha: float = 16.0
    lora_targets: str = AUTO_TARGETS

    def __post_init__(self) -> None:
        check_step_budget(self.steps, self.batch_size, self.learning_rate)
        if self.mode not in TUNING_MODES:
            raise ValueError(f"mode must be one of {', '.join(TUNING_MODES)}, got {self.mode!r}")
        if not 1 <= self.lora_rank <= 1024:
            raise ValueError(f"lora_rank must be in [1, 1024], got {self.lora_rank}")
        if not 0 < self.lora_alpha <= 4096:
            raise ValueError(f"lora_alpha must be in (0, 4096], got {self.lora_alpha}")
        if not self.lora_targets.strip():
            raise ValueError("lora_targets must be 'auto' or comma-separated module names")

    def to_dict(self) -> dict[str, Any]:
        """The LoRA fields appear only in mode ``lora``, so budgets stored before it keep their form."""
        data = asdict(self)
        if self.mode != "lora":
            for name in LORA_FIELDS:
                data.pop(name)
        return data


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


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """A classifier's head (classifier, score, pooler): new weights every mode must train."""
    return [
        p
        for name, p in model.named_parameters()
        if name.startswith(HEAD_PREFIXES) or ".pooler." in f".{name}"
    ]


def _trainable(model: nn.Module, mode: str, adapters: Sequence[nn.Parameter] = ()) -> list[nn.Parameter]:
    """``full``: every weight; ``embeddings+head``: the input embedding, the pooler and the classifier;
    ``body``: every weight but the input embedding; ``lora``: the ``adapters`` and a classifier's head."""
    if mode == "lora":
        chosen = [*adapters, *head_parameters(model)]
    elif mode == "full":
        chosen = list(model.parameters())
    elif mode == "body":
        chosen = without_input_embedding(model)
    else:
        chosen = [model.get_input_embeddings().weight, *head_parameters(model)]
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


BatchLoss = Callable[[list[int], torch.device], tuple[torch.Tensor, int]]  # rows -> (loss, tokens)
Checkpoint = Callable[[int], bool]  # steps done -> go on training?


def train_steps(
    model: nn.Module,
    examples: int,
    budget: TuningBudget,
    batch_loss: BatchLoss,
    seed: int = 0,
    advance: Callable[[int], None] | None = None,
    device: torch.device | None = None,
    checkpoint: Checkpoint | None = None,
) -> TuningRun:
    """Train ``model`` in place on the batches of :func:`batch_plan`, on ``device`` (moved there once;
    None: where it is), under mixed precision where the device supports it; ``batch_loss`` turns a
    batch's example indices into its loss. ``checkpoint(steps_done)`` runs after every step (the model
    in eval mode); training stops early when it returns False."""
    if device is not None:
        model.to(device)
    where = model_device(model)
    plan = batch_plan(examples, budget, seed)
    torch.manual_seed(seed)  # dropout
    adapters = (
        lora_adapters(model, budget.lora_rank, budget.lora_alpha, budget.lora_targets)
        if budget.mode == "lora"
        else contextlib.nullcontext([])
    )
    started, tokens, loss_value, done = time.perf_counter(), 0, float("nan"), 0
    with adapters as adapter_parameters:
        optimiser = adamw(_trainable(model, budget.mode, adapter_parameters), budget.learning_rate)
        model.train()
        for rows in plan:
            with autocast(where):
                loss, batch_tokens = batch_loss(rows, where)
            loss.backward()
            optimiser.step()
            optimiser.zero_grad(set_to_none=True)
            tokens += batch_tokens
            loss_value = float(loss.detach())
            done += 1
            if advance:
                advance(1)
            if checkpoint is not None and done < len(plan):
                model.eval()
                go_on = checkpoint(done)
                model.train()
                if not go_on:
                    break
        model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    seconds = time.perf_counter() - started
    return TuningRun(done, done * budget.batch_size, tokens, loss_value, seconds)


def fine_tune(
    model: nn.Module,
    token_ids: Sequence[Sequence[int]],
    labels: Sequence[int],
    budget: TuningBudget,
    pad_id: int,
    seed: int = 0,
    advance: Callable[[int], None] | None = None,
    device: torch.device | None = None,
    checkpoint: Checkpoint | None = None,
) -> TuningRun:
    """Tune a sequence classifier on labelled token ids (see :func:`train_steps`)."""

    def batch_loss(rows: list[int], where: torch.device) -> tuple[torch.Tensor, int]:
        ids, mask = pad_batch([token_ids[i] for i in rows], pad_id)
        target = torch.as_tensor([labels[i] for i in rows])
        out = model(input_ids=ids.to(where), attention_mask=mask.to(where), labels=target.to(where))
        return out.loss, int(mask.sum())

    return train_steps(model, len(token_ids), budget, batch_loss, seed, advance, device, checkpoint)
