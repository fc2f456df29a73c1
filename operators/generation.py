"""Private generation: the owner's greedy decoding loop around a shaken causal language model.

Each step the shaken model (as the cloud runs it) scores the next shaken id at the last position; the
owner decodes those scores to plaintext tokens with the key, takes the most likely token, encodes it
again (a homophonic key draws a fresh copy each time) and sends that shaken id back. The cloud sees
shaken ids only, in and out; the plaintext and the key stay with the owner. The model keeps its KV
cache between steps, so each step feeds one new id.

What holds exactly (greedy, ties going to the lowest plaintext id on both sides):
- a 1:1 key: the continuation equals the recovered model's greedy continuation of the same prompt
  (decoding only reorders the scores), and, without vertical operators and before any tuning, the
  plaintext model's;
- a homophonic key: a token's score is the log-sum-exp over its copies (``copy_mass`` "sum": the sum of
  their probabilities, right for a model tuned on shaken text); with "mean", no noise and no tuning the
  continuation equals the plaintext model's.

Keys are exact on the CPU, so ids are encoded there and then moved to the model's device.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from operators.errors import SettingsError, UnsupportedModelError
from operators.horizontal import check_copy_mass
from operators.identity import input_embedding
from operators.inference import has_vocabulary_output
from operators.key import ShakeKey
from operators.randomness import KeyStream

MAX_NEW_TOKENS = 1024

Encode = Callable[[torch.Tensor], torch.Tensor]  # plaintext ids (CPU, shape 1 x n) -> the model's ids
Decode = Callable[[torch.Tensor], torch.Tensor]  # the model's scores (1 x its vocabulary) -> plaintext


def private_generate(
    model: nn.Module,
    key: ShakeKey,
    prompt_ids: Sequence[int],
    max_new_tokens: int,
    source: KeyStream | None = None,
    copy_mass: str = "sum",
    stop_ids: Iterable[int] = (),
) -> list[int]:
    """The plaintext ids of the shaken ``model``'s greedy continuation of plaintext ``prompt_ids``.

    A homophonic key draws every copy from ``source`` (None: the OS CSPRNG); ``copy_mass`` merges a
    token's copies (see :meth:`operators.homophonic.Homophones.decode_logits`; a 1:1 key ignores it).
    Generation stops before any id in ``stop_ids`` (which is not returned) or after ``max_new_tokens``.
    """
    check_copy_mass(copy_mass)
    key.check_architecture(model, key.shaken_vocab_size)
    # a key that substitutes substitutes the prompt as an upload; the generated tokens go back as they
    # are (the cloud produced them, so they tell it nothing new)
    prompt = key.substitute([list(prompt_ids)])[0] if len(prompt_ids) else list(prompt_ids)
    return greedy_generate(
        model,
        prompt,
        max_new_tokens,
        encode=lambda ids: key.encode(ids, source),
        decode=lambda logits: key.horizontal.decode_logits(logits, copy_mass=copy_mass),
        stop_ids=stop_ids,
    )


def plaintext_generate(
    model: nn.Module, prompt_ids: Sequence[int], max_new_tokens: int, stop_ids: Iterable[int] = ()
) -> list[int]:
    """The same greedy loop without a key: a plaintext (or recovered) model on plaintext ids."""
    rows = int(input_embedding(model).shape[0])
    if any(not 0 <= int(i) < rows for i in prompt_ids):
        raise SettingsError(f"prompt token ids must lie in [0, {rows}) for this model's vocabulary")
    return greedy_generate(
        model, prompt_ids, max_new_tokens, encode=_unchanged, decode=_unchanged, stop_ids=stop_ids
    )


def _unchanged(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


@torch.no_grad()
def greedy_generate(
    model: nn.Module,
    prompt_ids: Sequence[int],
    max_new_tokens: int,
    *,
    encode: Encode,
    decode: Decode,
    stop_ids: Iterable[int] = (),
) -> list[int]:
    """Greedy decoding with the model's KV cache: ``encode`` maps plaintext ids to what the model reads,
    ``decode`` its last-position scores back to plaintext scores. Returns the new plaintext ids."""
    check_max_new_tokens(max_new_tokens)
    if len(prompt_ids) == 0:
        raise SettingsError("the prompt is empty: generation needs at least one token to continue")
    check_language_model(model)
    _check_context(model, len(prompt_ids) + max_new_tokens)
    device = input_embedding(model).device
    stops = {int(i) for i in stop_ids}
    step = _cached_step(model)
    was_training = model.training
    model.eval()  # no dropout while generating; the caller's mode comes back afterwards
    try:
        history = encode(torch.tensor([list(prompt_ids)], dtype=torch.long))
        pending, cache = history, None
        tokens: list[int] = []
        while True:
            logits, cache = step(pending.to(device), cache)
            token = int(decode(logits[:, -1, :]).argmax(dim=-1)[0])
            if token in stops:
                break
            tokens.append(token)
            if len(tokens) == max_new_tokens:
                break
            new = encode(torch.tensor([[token]], dtype=torch.long))
            history = torch.cat([history, new], dim=1)
            pending = new if cache is not None else history  # a model without a cache rereads it all
        return tokens
    finally:
        model.train(was_training)


def check_max_new_tokens(max_new_tokens: int) -> None:
    if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise SettingsError(f"max new tokens must be between 1 and {MAX_NEW_TOKENS}, got {max_new_tokens}")


def check_language_model(model: nn.Module) -> None:
    """Refuse a model that cannot predict the next token: no vocabulary output, or not a causal LM."""
    if not has_vocabulary_output(model):
        raise UnsupportedModelError(
            "the model has no language-model head (no vocabulary output layer): generation needs a causal "
            "language model such as GPT-2 or Llama, saved with its head"
        )
    can_generate = getattr(model, "can_generate", None)
    if callable(can_generate) and not can_generate():
        raise UnsupportedModelError(
            f"{type(model).__name__} does not predict the next token (not a causal language model); "
            "generation needs one such as GPT-2 or Llama"
        )


def _check_context(model: nn.Module, length: int) -> None:
    config = getattr(model, "config", None)
    limit = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    if isinstance(limit, int) and length > limit:
        raise SettingsError(
            f"the prompt plus the new tokens ({length}) exceed the model's {limit} positions; shorten the "
            "prompt or generate fewer tokens"
        )


def _cached_step(model: nn.Module) -> Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]]:
    """One forward pass that scores only the last position and returns the updated KV cache.

    transformers 5 names the cache ``cache``; 4.x ``past_key_values`` (in both the argument and the
    output); the last-position-only argument is ``logits_to_keep`` (``num_logits_to_keep`` before 4.50).
    """
    parameters = inspect.signature(model.forward).parameters
    cache_name = "cache" if "cache" in parameters else "past_key_values"
    keep = next((name for name in ("logits_to_keep", "num_logits_to_keep") if name in parameters), None)

    def step(ids: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
        kwargs: dict[str, Any] = {cache_name: cache, "use_cache": True}
        if keep is not None:
            kwargs[keep] = 1
        output = model(input_ids=ids, **kwargs)
        return output.logits, getattr(output, cache_name, None)

    return step
