"""Tiny randomly initialised causal LMs (GPT-2 and Llama, tied or untied heads) for exactness tests."""

from __future__ import annotations

from typing import Any

import torch


def random_causal_lm(
    family: str, vocab: int, tied: bool = True, seed: int = 0, **config: Any
) -> torch.nn.Module:
    """A 2-layer, 32-wide ``family`` ("gpt2" or "llama") causal LM over ``vocab`` ids, weights seeded;
    ``config``: further config fields (special token ids, initializer_range, positions)."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    if family == "gpt2":
        gpt2 = GPT2Config(
            vocab_size=vocab, n_embd=32, n_layer=2, n_head=2, tie_word_embeddings=tied, **config
        )
        return GPT2LMHeadModel(gpt2).eval()
    llama = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        tie_word_embeddings=tied,
        **config,
    )
    return LlamaForCausalLM(llama).eval()
