"""LoRA adapters through peft: the tuning mode ``lora`` trains low-rank adapters beside frozen weights.

The frozen input embedding stays exactly as uploaded (what the cloud tunes cannot denoise the rows), so a
shaken model tuned with LoRA depends on recovery training to read its rows. After training the adapters
are merged into the weights, so the tuned model is an ordinary model again: private inference, recovery
and attacks see one set of weights, as for every other mode.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

from operators.errors import SettingsError

AUTO_TARGETS = "auto"  # peft's default target modules for the architecture


def target_modules(model: nn.Module, targets: str) -> list[str]:
    """Module names the adapters attach to: ``targets`` comma-separated, or peft's defaults for the
    model's architecture (attention projections, e.g. q_proj,v_proj for Llama, c_attn for GPT-2)."""
    if targets != AUTO_TARGETS:
        names = [name.strip() for name in targets.split(",") if name.strip()]
        if not names:
            raise SettingsError("lora_targets names no module")
        return names
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    model_type = getattr(model.config, "model_type", "")
    if model_type not in DEFAULTS:
        raise SettingsError(
            f"no default LoRA target modules for model type {model_type!r}; give lora_targets "
            "(comma-separated module names, e.g. q_proj,v_proj)"
        )
    return list(DEFAULTS[model_type])


def _matching_modules(model: nn.Module, names: list[str]) -> list[nn.Module]:
    return [module for path, module in model.named_modules() if path.split(".")[-1] in names]


def adapter_parameters(model: nn.Module, rank: int, targets: str) -> int:
    """Parameters LoRA adds: rank x (inputs + outputs) for every targeted linear layer (known before
    training, for the cost figure)."""
    total = 0
    for module in _matching_modules(model, target_modules(model, targets)):
        weight = getattr(module, "weight", None)
        if weight is not None and weight.dim() == 2:
            total += rank * (weight.shape[0] + weight.shape[1])
    return total


@contextmanager
def lora_adapters(model: nn.Module, rank: int, alpha: float, targets: str) -> Iterator[list[nn.Parameter]]:
    """Attach LoRA adapters to ``model`` in place, yield the adapter parameters (the only ones left
    trainable), and on leaving merge them into the weights and remove them."""
    from peft import LoraConfig, get_peft_model

    names = target_modules(model, targets)
    if not _matching_modules(model, names):
        raise SettingsError(f"no module of this model is named {', '.join(names)} (lora_targets)")
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=names, lora_dropout=0.0, bias="none")
    with warnings.catch_warnings():  # peft calls a transformers property deprecated in v5
        warnings.filterwarnings("ignore", category=FutureWarning)
        wrapped: Any = get_peft_model(model, config)
    try:
        yield [p for name, p in model.named_parameters() if "lora_" in name]
    finally:
        merged = wrapped.merge_and_unload()
        if merged is not model:  # peft edits the modules in place; anything else would lose the tuning
            raise RuntimeError("peft returned a different model object after merging the adapters")
