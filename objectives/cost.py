"""Cost accounting: measured seconds and memory (kept for review) and a deterministic FLOP figure.

The search minimises the FLOP figure because seconds on a shared machine are noise. It is an estimate
from batch shapes: a transformer forward pass costs 2 x (non-embedding parameters) per token plus
4 x layers x hidden x width per token for attention, plus 2 x hidden x vocabulary per token for a
vocabulary output tied to the embedding (an untied one is a body parameter); a training step costs 3
forward passes when every weight trains and 2 when only the embeddings and the head, or only LoRA
adapters, do (activation gradients still flow through every frozen layer, weight gradients do not), and
LoRA adds 6 x adapter parameters per token.
"""

from __future__ import annotations

import re
import resource
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn

from operators.identity import output_weight

TRAIN_MULTIPLIER = {"full": 3.0, "embeddings+head": 2.0, "body": 3.0, "lora": 2.0}
NOISE_FLOPS_PER_ENTRY = 20.0  # keystream bytes, Box-Muller/inverse-CDF transform and the addition
ADAM_FLOPS_PER_PARAMETER = 12.0  # moments, bias correction, square root, division, update
TRAINED_BYTES_PER_PARAMETER = 16  # float32 weight, gradient and Adam's two moments


@dataclass(frozen=True)
class StageTime:
    """Wall and CPU seconds of one stage (CPU time counts every thread)."""

    wall: float
    cpu: float


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.time``."""

    def __enter__(self) -> Stopwatch:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.time = StageTime(time.perf_counter() - self._wall, time.process_time() - self._cpu)


_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_memory() -> bool:
    """Start a new peak-memory window (Linux: resets VmHWM); False where that is not possible."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_memory_mb() -> float:
    """Peak resident memory since the last reset (or since process start where resets fail)."""
    try:
        match = re.search(r"VmHWM:\s+(\d+)\s+kB", _STATUS.read_text())
        if match:
            return int(match.group(1)) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass(frozen=True)
class ModelShape:
    """What compute depends on: non-embedding parameters, layers, hidden size, vocabulary rows."""

    body_parameters: int
    layers: int
    hidden: int
    vocab: int
    tied_output_rows: int = 0  # rows of a vocabulary output that shares the input embedding's weight

    @classmethod
    def of(cls, model: nn.Module) -> ModelShape:
        embedding_params = {
            id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()
        }
        body = sum(p.numel() for p in model.parameters() if id(p) not in embedding_params)
        config = model.config
        layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", 1)
        hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", 1)
        embedding = model.get_input_embeddings().weight
        tied = output_weight(model) is embedding
        return cls(
            int(body), int(layers), int(hidden), int(embedding.shape[0]), embedding.shape[0] if tied else 0
        )

    def with_vocabulary(self, rows: int) -> ModelShape:
        """The shape once a homophonic key has grown the vocabulary to ``rows`` (a tied output grows too)."""
        return replace(self, vocab=rows, tied_output_rows=rows if self.tied_output_rows else 0)

    def forward_flops(self, shapes: Iterable[tuple[int, int]]) -> float:
        """Forward FLOPs over batches given as (rows, padded width)."""
        total = 0.0
        for rows, width in shapes:
            tokens = rows * width
            per_token = 2.0 * self.body_parameters + 4.0 * self.layers * self.hidden * width
            total += tokens * (per_token + 2.0 * self.hidden * self.tied_output_rows)
        return total

    def training_flops(
        self, shapes: Iterable[tuple[int, int]], mode: str, adapter_parameters: int = 0
    ) -> float:
        """FLOPs of training steps over batches; ``adapter_parameters``: LoRA's, trained in mode lora."""
        shapes = list(shapes)
        tokens = sum(rows * width for rows, width in shapes)
        return TRAIN_MULTIPLIER[mode] * self.forward_flops(shapes) + 6.0 * adapter_parameters * tokens


def implant_flops(vocab: int, dims: Iterable[tuple[str, int]]) -> float:
    """FLOPs of applying a vertical chain, given (operator, touched dimensions) per operator."""
    total = 0.0
    for op, k in dims:
        if op == "tilt":
            total += 2.0 * vocab * k * k
        elif op in ("addv", "inflate"):
            total += vocab * k
        else:
            total += NOISE_FLOPS_PER_ENTRY * vocab * k
    return total


def added_rows_flops(rows: int, hidden: int, copy_noise: float, training_steps: int) -> float:
    """What rows added to the embedding (homophonic copies) cost beyond a 1:1 key: their copy noise
    and the optimiser's update of each at every training step (embedding gradients are dense)."""
    noise = NOISE_FLOPS_PER_ENTRY * rows * hidden if copy_noise > 0 else 0.0
    return noise + ADAM_FLOPS_PER_PARAMETER * rows * hidden * training_steps


def embedding_memory_mb(rows: int, hidden: int) -> float:
    """Memory of a trained input embedding: weights, gradients and optimiser state."""
    return rows * hidden * TRAINED_BYTES_PER_PARAMETER / 2**20


def batch_shapes(
    token_ids: Sequence[Sequence[int]], batches: Iterable[Sequence[int]]
) -> list[tuple[int, int]]:
    """(rows, padded width) of each batch of example indices."""
    return [(len(rows), max(len(token_ids[i]) for i in rows)) for rows in batches]


def recovery_flops(shape: ModelShape, shapes: Iterable[tuple[int, int]], part: str, objective: str) -> float:
    """FLOPs of recovery training: the body as in tuning (weight gradients only where ``part`` trains)
    plus, for ``lm``, the head's projection onto the whole vocabulary at every position or, for
    ``distill``, the plaintext body's forward pass."""
    from objectives.recovery_training import FIRST_LAYERS

    multiplier = {"all": 3.0, "embeddings": 2.0}.get(
        part, 2.0 + min(FIRST_LAYERS, shape.layers) / shape.layers
    )
    shapes = list(shapes)
    tokens = sum(rows * width for rows, width in shapes)
    body = shape.forward_flops(shapes)
    if objective == "distill":
        return (multiplier + 1.0) * body
    return multiplier * body + 3.0 * 2.0 * tokens * shape.hidden * shape.vocab
