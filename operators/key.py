"""The shaking key: a secret seed plus the settings and model it was made for.

Everything secret (the permutation pi, the operators' dimensions, parameters and noise) is derived from
the 256-bit seed, so a key is small, and the same key always gives the same shaken model. Only the
fingerprint, a one-way hash, may leave the owner's machine.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from torch import nn

from operators.errors import KeyMismatchError, SettingsError
from operators.homophonic import Homophones, copy_counts, dense_copies, make_homophones, sparse_copies
from operators.horizontal import Permutation, make_permutation
from operators.identity import ModelIdentity, input_embedding, tensor_sha256, vocabulary_sha256
from operators.randomness import KeyStream
from operators.settings import ShakeSettings
from operators.vertical import VerticalChain, build_chain

SEED_BYTES = 32
CONFIG_MARKER = "shaketune"  # attribute of a shaken/recovered model's config


@dataclass(frozen=True)
class ShakeKey:
    """Horizontal permutation and vertical chain for one model, derived from a secret seed."""

    settings: ShakeSettings
    model: ModelIdentity
    seed: bytes = field(repr=False)
    copies: tuple[tuple[int, int], ...] = ()  # (plaintext id, copies) where > 1: homophonic keys only

    def __post_init__(self) -> None:
        if not isinstance(self.seed, bytes) or len(self.seed) != SEED_BYTES:
            raise ValueError(f"seed must be {SEED_BYTES} bytes")
        if bool(self.copies) != self.settings.homophones.enabled:
            raise ValueError("a copy table goes with homophone settings, and only with them")
        object.__setattr__(self, "copies", tuple((int(i), int(k)) for i, k in self.copies))

    @cached_property
    def fingerprint(self) -> str:
        """A public identifier of this key (a one-way hash; reveals nothing of the seed)."""
        h = hashlib.sha256(b"shaketune/key-fingerprint/v1")
        h.update(self.seed)
        h.update(self.settings.to_json().encode())
        h.update(self.model.embedding_sha256.encode())
        h.update(self.model.vocab_sha256.encode())
        if self.copies:  # 1:1 keys keep the fingerprint they had before homophones existed
            h.update(b"copies" + repr(self.copies).encode())
        return h.hexdigest()[:16]

    def _stream(self, label: str) -> KeyStream:
        return KeyStream(self.seed, label)

    @cached_property
    def permutation(self) -> Permutation:
        """pi over the model's vocabulary, special tokens fixed (for a homophonic key: which tokens move)."""
        return make_permutation(
            self.model.vocab_size,
            self.model.special_ids,
            self.settings.coverage,
            self._stream("horizontal"),
        )

    @property
    def homophonic(self) -> bool:
        return bool(self.copies)

    @cached_property
    def horizontal(self) -> Permutation | Homophones:
        """The horizontal map: pi, or for a homophonic key every copy's secret shaken id."""
        if not self.copies:
            return self.permutation
        moved_mask = self.permutation.forward != torch.arange(self.model.vocab_size)
        return make_homophones(
            dense_copies(self.copies, self.model.vocab_size),
            fixed=torch.nonzero(~moved_mask).flatten(),
            moved=torch.nonzero(moved_mask).flatten(),
            stream=self._stream("homophones"),
        )

    @property
    def shaken_vocab_size(self) -> int:
        """Rows of the shaken embedding (more than the vocabulary for a homophonic key)."""
        return self.model.vocab_size + sum(k - 1 for _, k in self.copies)

    def encode(self, ids: torch.Tensor, source: KeyStream | None = None) -> torch.Tensor:
        """Plaintext ids to shaken ids; a homophonic key picks each occurrence's copy from ``source``
        (None: the OS CSPRNG, a fresh choice every time)."""
        return self.horizontal.encode(ids, source)

    def occurrence_stream(self, label: str) -> KeyStream:
        """A reproducible stream of copy choices (for measurements that must repeat exactly)."""
        return self._stream(f"occurrences/{label}")

    def vertical_chain(self, scale: float) -> VerticalChain:
        """The vertical operators bound to their secret parameters for an embedding of this scale."""
        return build_chain(self.settings.vertical, self.model.hidden_size, scale, self._stream("vertical"))

    def public_summary(self) -> dict[str, Any]:
        """What may be shown or stored: fingerprint, settings and model identity, never the seed."""
        return {
            "fingerprint": self.fingerprint,
            "settings": self.settings.to_dict(),
            "model": self.model.to_dict(),
        }

    # --- checks that the key fits what it is applied to -------------------------------------------
    def check_architecture(self, model: nn.Module, rows_expected: int | None = None) -> None:
        """The model has this key's vocabulary size (or ``rows_expected`` rows) and hidden size."""
        weight = input_embedding(model)
        rows, hidden = int(weight.shape[0]), int(weight.shape[1])
        expected = rows_expected or self.model.vocab_size
        if rows != expected:
            made_for = f"a vocabulary of {self.model.vocab_size} tokens"
            if expected != self.model.vocab_size:
                made_for += f" and a shaken embedding of {expected} rows"
            raise KeyMismatchError(f"key was made for {made_for}; this model's embedding has {rows} rows")
        if hidden != self.model.hidden_size:
            raise KeyMismatchError(
                f"key was made for hidden size {self.model.hidden_size}; this model has {hidden}"
            )

    def check_pretrained(self, model: nn.Module) -> None:
        """The model is the plaintext pretrained model this key was made for."""
        self.check_architecture(model)
        state = marker(model)
        if state is not None and state.get("state") == "shaken":
            raise KeyMismatchError("this model is already shaken; shake the plaintext model")
        digest = tensor_sha256(input_embedding(model))
        if digest != self.model.embedding_sha256:
            raise KeyMismatchError(
                f"key was made for model {self.model.name!r} (embedding "
                f"{self.model.embedding_sha256[:12]}); this model's embedding differs "
                f"({digest[:12]})"
            )

    def check_tokenizer(self, tokenizer: Any) -> None:
        """The tokenizer has the vocabulary this key was made for."""
        if vocabulary_sha256(tokenizer) != self.model.vocab_sha256:
            raise KeyMismatchError(
                f"key was made for the vocabulary of {self.model.name!r}; this tokenizer's vocabulary differs"
            )

    def check_shaken(self, model: nn.Module) -> list[str]:
        """The model was shaken with this key; returns warnings when that cannot be confirmed."""
        self.check_architecture(model, self.shaken_vocab_size)
        state = marker(model)
        if state is None:
            return [
                "model config carries no shaketune marker, so it cannot be confirmed that it was "
                f"shaken with key {self.fingerprint}; proceeding on matching sizes"
            ]
        if state.get("state") != "shaken":
            raise KeyMismatchError(f"model is marked {state.get('state')!r}, not shaken")
        if state.get("key_fingerprint") != self.fingerprint:
            raise KeyMismatchError(
                f"model was shaken with key {state.get('key_fingerprint')}, not with this key "
                f"({self.fingerprint})"
            )
        return []


def marker(model: nn.Module) -> dict[str, Any] | None:
    """The shaketune marker in a model's config (state and key fingerprint), if any."""
    value = getattr(getattr(model, "config", None), CONFIG_MARKER, None)
    return value if isinstance(value, dict) else None


def set_marker(model: nn.Module, state: str, key: ShakeKey) -> None:
    """Record in the config that the model is shaken/recovered with ``key`` (fingerprint only)."""
    config = getattr(model, "config", None)
    if config is not None:
        setattr(config, CONFIG_MARKER, {"state": state, "key_fingerprint": key.fingerprint})


def generate_key(
    settings: ShakeSettings,
    model: nn.Module,
    tokenizer: Any,
    name: str,
    seed: bytes | None = None,
    prior: torch.Tensor | None = None,
) -> ShakeKey:
    """A new key for ``model`` from a cryptographically secure seed (``seed`` only for tests).

    Homophone settings need ``prior``, public token counts per plaintext id, to size each token's copies.
    """
    identity = ModelIdentity.of(model, tokenizer, name)
    copies: tuple[tuple[int, int], ...] = ()
    if settings.homophones.enabled:
        if prior is None or float(prior.sum()) == 0:
            raise SettingsError("homophone settings need public text to size each token's copies")
        if len(prior) != identity.vocab_size:
            raise SettingsError(f"prior has {len(prior)} entries; the vocabulary {identity.vocab_size}")
        counts = copy_counts(prior, identity.special_ids, settings.homophones.max_share)
        copies = sparse_copies(counts)
        if not copies:  # nothing is frequent enough to split: the map stays 1:1
            raise SettingsError(
                f"no token of the public text has a share above max_share "
                f"{settings.homophones.max_share}; lower it or drop homophones"
            )
    seed = secrets.token_bytes(SEED_BYTES) if seed is None else seed
    return ShakeKey(settings, identity, seed, copies)
