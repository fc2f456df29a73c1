"""Recovery training: teach the shaken model to read shaken ids again, on public text, before private tuning.

The CypherTalk paper's "awareness/function recovery": the owner trains the shaken model with its own
pretraining objective (masked LM for BERT-style models, next-token for causal ones) on public text mapped
with the key, then hands the adapted body to task tuning. Public text costs no privacy, but the upload
changes: the attacks must run on the adapted model as well. The public text is encoded with the key, so
this stage runs on the owner's side: a cloud that saw shaken ids of a known public corpus could read the
key off them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from objectives.data import DataError
from objectives.device import autocast, model_device
from objectives.encoded import encode_token_ids
from objectives.models import pretrained_body, pretrained_language_model
from objectives.tokens import pad_batch
from objectives.tuning import (
    adamw,
    batch_plan,
    budget_from_dict,
    check_step_budget,
    without_input_embedding,
)
from operators.errors import SettingsError, UnsupportedModelError
from operators.implant import shake_model
from operators.inference import has_vocabulary_output
from operators.key import ShakeKey

# "body": every weight but the input embedding, so the uploaded rows stay exactly as shaken (the body
# learns to read them; the rows are not denoised towards the plaintext rows an attacker could match)
RECOVERY_PARTS = ("embeddings", "embeddings+first-layers", "all", "body")
RECOVERY_OBJECTIVES = ("lm", "distill")  # the model's pretraining objective, or matching the plaintext body
FIRST_LAYERS = 2  # how many of the bottom transformer layers "embeddings+first-layers" trains
IGNORE = -100  # label of positions the loss skips


@dataclass(frozen=True)
class RecoveryBudget:
    """How much recovery training a key gets: steps on public text and which weights train (0: none)."""

    steps: int = 0
    batch_size: int = 16
    learning_rate: float = 1e-4
    part: str = "all"
    objective: str = "distill"
    mask_share: float = 0.15  # masked LM only

    def __post_init__(self) -> None:
        check_step_budget(self.steps, self.batch_size, self.learning_rate, SettingsError, "recovery ")
        if self.part not in RECOVERY_PARTS:
            raise SettingsError(
                f"recovery part must be one of {', '.join(RECOVERY_PARTS)}, got {self.part!r}"
            )
        if self.objective not in RECOVERY_OBJECTIVES:
            raise SettingsError(
                f"recovery objective must be one of {', '.join(RECOVERY_OBJECTIVES)}, got {self.objective!r}"
            )
        if not 0 < self.mask_share < 1:
            raise SettingsError(f"recovery mask_share must be in (0, 1), got {self.mask_share}")

    @property
    def enabled(self) -> bool:
        return self.steps > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> RecoveryBudget:
        return budget_from_dict(cls, data, "recovery")


@dataclass(frozen=True)
class LanguageModelling:
    """The pretraining objective a model supports and the ids it needs."""

    kind: str  # "masked" or "causal"
    vocab_size: int
    pad_id: int
    mask_id: int | None = None
    special_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class RecoveryRun:
    """What recovery training did, with the language-model loss on held-out public text around it."""

    steps: int
    tokens: int
    heldout_loss_before: float
    heldout_loss_after: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def language_modelling(model: nn.Module, tokenizer: Any) -> LanguageModelling:
    """Next-token for causal models, masked LM otherwise (the tokenizer must have a mask token)."""
    vocab = model.get_input_embeddings().weight.shape[0]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    special = tuple(tokenizer.all_special_ids)
    if not is_causal(model):
        if tokenizer.mask_token_id is None:
            raise UnsupportedModelError("masked-LM recovery training needs a tokenizer with a mask token")
        return LanguageModelling("masked", vocab, pad_id, tokenizer.mask_token_id, special)
    return LanguageModelling("causal", vocab, pad_id, None, special)


def is_causal(model: nn.Module) -> bool:
    """Whether ``model`` is a next-token model (a class transformers lists for causal LM)."""
    from transformers.models.auto import modeling_auto

    causal = {
        name for value in modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values() for name in _names(value)
    }
    return type(model).__name__ in causal


def _names(value: str | tuple[str, ...]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def first_layers(model: nn.Module, count: int) -> list[nn.Module]:
    """The bottom ``count`` transformer blocks: the first module list as long as the layer count."""
    layers = getattr(model.config, "num_hidden_layers", None) or getattr(model.config, "n_layer", None)
    for module in model.base_model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == layers:
            return list(module)[:count]
    raise UnsupportedModelError(f"cannot find the transformer layers of {type(model).__name__}")


def trainable_parameters(model: nn.Module, part: str) -> list[nn.Parameter]:
    """The weights ``part`` trains, plus the language-model head (everything outside the base model)."""
    if part == "all":
        return list(model.parameters())
    if part == "body":
        return without_input_embedding(model)
    body = {id(p) for p in model.base_model.parameters()}
    chosen = [model.get_input_embeddings().weight]
    chosen += [p for p in model.parameters() if id(p) not in body]  # the LM head (tied weights dedupe)
    if part == "embeddings+first-layers":
        chosen += [p for layer in first_layers(model, FIRST_LAYERS) for p in layer.parameters()]
    unique = {id(p): p for p in chosen}
    return list(unique.values())


def lm_batch(
    sequences: Sequence[Sequence[int]],
    objective: LanguageModelling,
    mask_share: float,
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """Inputs and labels of one batch: 80/10/10 masking for masked LM, shifted-by-the-model for causal."""
    ids, attention = pad_batch(sequences, objective.pad_id)
    labels = ids.clone()
    labels[attention == 0] = IGNORE
    if objective.kind == "masked":
        maskable = attention.bool() & ~torch.isin(
            ids, torch.as_tensor(objective.special_ids, dtype=torch.long)
        )
        chosen = (torch.rand(ids.shape, generator=generator) < mask_share) & maskable
        labels[~chosen] = IGNORE
        draw = torch.rand(ids.shape, generator=generator)
        ids = ids.clone()
        ids[chosen & (draw < 0.8)] = objective.mask_id
        random_ids = torch.randint(0, objective.vocab_size, ids.shape, generator=generator)
        swap = chosen & (draw >= 0.8) & (draw < 0.9)
        ids[swap] = random_ids[swap]
    return {"input_ids": ids, "attention_mask": attention, "labels": labels}


BatchLoss = Callable[[Sequence[Any], torch.Generator], tuple[torch.Tensor, int] | None]


def lm_loss(model: nn.Module, objective: LanguageModelling, mask_share: float) -> BatchLoss:
    """Masked-LM or next-token loss of ``model`` on a batch of (shaken) id sequences (masks drawn on the
    CPU, so they are the same whatever the device; the batch then moves to the model's device)."""

    def loss(
        sequences: Sequence[Sequence[int]], generator: torch.Generator
    ) -> tuple[torch.Tensor, int] | None:
        batch = lm_batch(sequences, objective, mask_share, generator)
        predicted = int((batch["labels"] != IGNORE).sum())
        if not predicted:
            return None
        where = model_device(model)
        with autocast(where):
            return model(**{name: value.to(where) for name, value in batch.items()}).loss, predicted

    return loss


def distillation_loss(student: nn.Module, teacher: nn.Module, pad_id: int) -> BatchLoss:
    """Mean squared distance between the shaken body's hidden states on shaken ids and the plaintext
    body's on the same text, over every transformer layer and real token, relative to the teacher's scale.

    Batches are (plaintext ids, shaken ids) pairs; the owner has both, the cloud neither.
    """

    def loss(
        pairs: Sequence[tuple[Sequence[int], Sequence[int]]], _: torch.Generator
    ) -> tuple[torch.Tensor, int]:
        where = model_device(student)
        plain, plain_mask = (t.to(where) for t in pad_batch([p for p, _ in pairs], pad_id))
        shaken, mask = (t.to(where) for t in pad_batch([s for _, s in pairs], pad_id))
        with autocast(where):
            with torch.no_grad():
                targets = teacher(
                    input_ids=plain, attention_mask=plain_mask, output_hidden_states=True
                ).hidden_states
            states = student(input_ids=shaken, attention_mask=mask, output_hidden_states=True).hidden_states
        real = mask.bool()
        total = sum(  # in float32 even under autocast (a no-op on float32 states)
            ((s.float() - t.float())[real] ** 2).mean() / t.float()[real].var()
            for s, t in zip(states[1:], targets[1:], strict=True)
        )
        return total / (len(states) - 1), int(real.sum())

    return loss


def heldout_loss(loss: BatchLoss, items: Sequence[Any], batch_size: int = 32, seed: int = 0) -> float:
    """Mean recovery loss over held-out items with fixed masks (the same masks on every call)."""
    generator = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(items), batch_size):
            measured = loss(items[start : start + batch_size], generator)
            if measured is not None:
                total += float(measured[0]) * measured[1]
                count += measured[1]
    return total / count if count else float("nan")


def recovery_train(
    model: nn.Module,
    loss: BatchLoss,
    items: Sequence[Any],
    heldout: Sequence[Any],
    budget: RecoveryBudget,
    seed: int = 0,
    advance: Callable[[int], None] | None = None,
) -> RecoveryRun:
    """Train ``part`` of ``model`` in place on batches of ``items`` under ``loss``."""
    model.eval()
    before = heldout_loss(loss, heldout, seed=seed)
    plan = batch_plan(len(items), budget, seed)
    torch.manual_seed(seed)  # dropout
    generator = torch.Generator().manual_seed(seed + 1)
    parameters = trainable_parameters(model, budget.part)
    keep = {id(p) for p in parameters}
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in keep)
    optimiser = adamw(parameters, budget.learning_rate)
    started, tokens = time.perf_counter(), 0
    model.train()
    for rows in plan:
        measured = loss([items[i] for i in rows], generator)
        if measured is not None:
            measured[0].backward()
            optimiser.step()
            optimiser.zero_grad(set_to_none=True)
            tokens += measured[1]
        if advance:
            advance(1)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    seconds = time.perf_counter() - started
    after = heldout_loss(loss, heldout, seed=seed)
    return RecoveryRun(budget.steps, tokens, before, after, seconds)


def transfer_body(source: nn.Module, target: nn.Module) -> None:
    """Copy the base-model weights of ``source`` (the trained language model) into ``target``.

    Weights only the target has (a classifier's pooler) keep their values; anything else missing is an error.
    """
    state = source.base_model.state_dict()
    missing, unexpected = target.base_model.load_state_dict(state, strict=False)
    stray = [name for name in missing if not name.startswith("pooler.")]
    if stray or unexpected:
        raise UnsupportedModelError(
            f"language model and task model bodies differ: {', '.join([*stray, *unexpected][:5])}"
        )


def split_heldout(public_ids: Sequence[Sequence[int]]) -> tuple[list[list[int]], list[list[int]]]:
    """Public text for training and a held-out tail (a tenth, at most 200 sentences) to score it on."""
    if len(public_ids) < 2:
        raise DataError("recovery training needs at least 2 sentences of public text")
    heldout = min(200, max(1, len(public_ids) // 10))
    rows = [list(ids) for ids in public_ids]
    return rows[:-heldout], rows[-heldout:]


def recovery_train_shaken(
    shaken: nn.Module,
    key: ShakeKey,
    model_name: str,
    tokenizer: Any,
    public_ids: Sequence[Sequence[int]],
    budget: RecoveryBudget,
    seed: int = 0,
    advance: Callable[[int], None] | None = None,
    device: torch.device | None = None,
) -> RecoveryRun:
    """The owner's recovery stage on public ids (plaintext): train in shaken space, in place in ``shaken``.

    ``lm``: train ``model_name``'s language model, shaken with ``key``, then move its body into ``shaken``.
    ``distill``: train ``shaken``'s body to reproduce the plaintext body's hidden states.
    Every model trains on ``device`` (None: where ``shaken`` is); keys and encoding stay on the CPU.
    """
    where = device if device is not None else model_device(shaken)
    shaken.to(where)
    corpus, heldout = split_heldout(public_ids)
    if budget.objective == "distill":
        # the cached, read-only teacher moves in place: later trials on the same device find it there
        student, teacher = shaken.base_model, pretrained_body(model_name).base_model.to(where)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        loss = distillation_loss(student, teacher, pad_id)
        stream = key.occurrence_stream("recovery")
        pairs = lambda rows: list(zip(rows, encode_token_ids(key, rows, stream), strict=True))  # noqa: E731
        return recovery_train(student, loss, pairs(corpus), pairs(heldout), budget, seed, advance)
    # a causal LM trains itself; a classifier borrows its checkpoint's language model and takes its body
    own_head = has_vocabulary_output(shaken)
    language_model = shaken if own_head else shake_model(pretrained_language_model(model_name), key).to(where)
    loss = lm_loss(language_model, language_modelling(language_model, tokenizer), budget.mask_share)
    stream = key.occurrence_stream("recovery")  # a homophonic key's copies, the same for the same key
    items, held = encode_token_ids(key, corpus, stream), encode_token_ids(key, heldout, stream)
    run = recovery_train(language_model, loss, items, held, budget, seed, advance)
    if not own_head:
        transfer_body(language_model, shaken)
    return run
