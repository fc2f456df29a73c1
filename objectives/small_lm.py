"""Small causal language models built from a config and pretrained briefly on public text.

No pretrained causal LM can be fetched offline, so tests, the demo and the benchmark build one: a Llama- or
GPT-2-architecture model with the bundled default tokenizer, trained for a few hundred next-token steps
on public text so that shaking, recovery training and tuning act on a model that has learnt something.
The result is an ordinary model directory: every command takes it as ``--model DIR``, as it would take
``Qwen/Qwen2.5-0.5B`` or any other hub model.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from objectives.evaluation import majority_accuracy
from objectives.models import DEFAULT_MODEL, load_tokenizer, pretrained_body, quiet_transformers
from objectives.next_token import causal_batch, evaluate_next_token, targets_of
from objectives.tokens import tokenize
from objectives.tuning import adamw, batch_plan
from operators.errors import SettingsError

ARCHITECTURES = ("llama", "gpt2")
BUILD_FILE = "shaketune-small-lm.json"  # how the directory was built, so a cache can tell it is current


@dataclass(frozen=True)
class SmallLMSpec:
    """Architecture, size and pretraining budget of a small causal LM."""

    architecture: str = "llama"
    hidden: int = 64
    layers: int = 2
    heads: int = 2
    max_length: int = 48
    steps: int = 300
    batch_size: int = 32
    learning_rate: float = 3e-3
    seed: int = 0
    tokenizer: str = DEFAULT_MODEL
    embedding_init: str = "pca"  # "pca": the tokenizer's model's embedding rows, projected; "random"

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise SettingsError(
                f"architecture must be one of {', '.join(ARCHITECTURES)}, got {self.architecture!r}"
            )
        if self.hidden < 8 or self.hidden % self.heads:
            raise SettingsError(f"hidden must be >= 8 and a multiple of heads, got {self.hidden}")
        if self.embedding_init not in ("pca", "random"):
            raise SettingsError(f"embedding_init must be pca or random, got {self.embedding_init!r}")
        if self.layers < 1 or self.steps < 0 or self.batch_size < 1 or self.max_length < 4:
            raise SettingsError("layers >= 1, steps >= 0, batch_size >= 1 and max_length >= 4 are needed")


@dataclass(frozen=True)
class PretrainReport:
    """What brief pretraining achieved: next-token accuracy on held-out public text before and after."""

    steps: int
    seconds: float
    heldout_accuracy_before: float
    heldout_accuracy_after: float
    unigram_accuracy: float  # always predicting the most common training token


def build_config(spec: SmallLMSpec, tokenizer: Any) -> Any:
    """A transformers config for ``spec`` over the tokenizer's vocabulary (tied input/output rows)."""
    import transformers

    common = {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.cls_token_id,
        "eos_token_id": tokenizer.sep_token_id,
        "tie_word_embeddings": True,
    }
    if spec.architecture == "gpt2":
        return transformers.GPT2Config(
            n_embd=spec.hidden,
            n_layer=spec.layers,
            n_head=spec.heads,
            n_positions=max(64, spec.max_length),
            **common,
        )
    return transformers.LlamaConfig(
        hidden_size=spec.hidden,
        intermediate_size=2 * spec.hidden,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.heads,
        max_position_embeddings=max(64, spec.max_length),
        **common,
    )


def projected_rows(name: str, hidden: int, std: float = 0.02) -> torch.Tensor:
    """The embedding rows of the public model ``name`` projected onto their top ``hidden`` principal
    directions and scaled to ``std``: a start that already places related tokens together, so brief
    pretraining spends its steps on the layers."""
    rows = pretrained_body(name).get_input_embeddings().weight.detach().float()
    centred = rows - rows.mean(0)
    _, _, basis = torch.pca_lowrank(centred, q=hidden, center=False, niter=4)
    projected = centred @ basis[:, :hidden]
    return projected / projected.std() * std


def pretrain_small_lm(
    spec: SmallLMSpec,
    texts: Sequence[str],
    out: str | Path,
    advance: Callable[[int], None] | None = None,
) -> PretrainReport:
    """Build ``spec``'s model, pretrain it on ``texts`` (public text, 5% held out) and save model and
    tokenizer to ``out``, with a record of how it was built."""
    import transformers

    quiet_transformers()
    if len(texts) < 20:
        raise SettingsError(f"pretraining needs at least 20 public texts, got {len(texts)}")
    tokenizer = load_tokenizer(spec.tokenizer)
    sequences = tokenize(tokenizer, texts, spec.max_length)
    heldout_count = max(10, len(sequences) // 20)
    heldout, train = sequences[:heldout_count], sequences[heldout_count:]
    torch.manual_seed(spec.seed)
    model = transformers.AutoModelForCausalLM.from_config(build_config(spec, tokenizer))
    if spec.embedding_init == "pca":
        with torch.no_grad():
            model.get_input_embeddings().weight.copy_(projected_rows(spec.tokenizer, spec.hidden))
    starts = lambda seqs: [1] * len(seqs)  # noqa: E731  every token after the first is a target
    before = evaluate_next_token(model, heldout, starts(heldout), tokenizer.pad_token_id).accuracy
    optimiser = adamw(list(model.parameters()), spec.learning_rate)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=spec.learning_rate, total_steps=max(spec.steps, 1), pct_start=0.1
    )
    started = time.perf_counter()
    model.train()
    for rows in batch_plan(len(train), spec, spec.seed):
        ids, mask, labels = causal_batch([train[i] for i in rows], tokenizer.pad_token_id)
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        optimiser.step()
        schedule.step()
        optimiser.zero_grad(set_to_none=True)
        if advance:
            advance(1)
    model.eval()
    report = PretrainReport(
        spec.steps,
        time.perf_counter() - started,
        before,
        evaluate_next_token(model, heldout, starts(heldout), tokenizer.pad_token_id).accuracy,
        majority_accuracy(targets_of(train, starts(train)), targets_of(heldout, starts(heldout))),
    )
    out = Path(out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / BUILD_FILE).write_text(json.dumps({"spec": asdict(spec), "report": asdict(report)}, indent=2))
    return report


def built_with(directory: str | Path) -> dict[str, Any] | None:
    """The spec a directory was built with by :func:`pretrain_small_lm`, or None."""
    path = Path(directory) / BUILD_FILE
    return json.loads(path.read_text()) if path.is_file() else None
