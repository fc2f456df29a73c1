"""The shaking key: a secret seed plus the settings and model it was made for.

Everything secret (the permutation pi, the operators' dimensions, parameters and noise) is derived from
the 256-bit seed, so a key is small, and the same key always gives the same shaken model. Only the
fingerprint, a one-way hash, may leave the owner's machine.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import torch
from torch import nn

from operators.errors import KeyMismatchError, SettingsError, ShaketuneError
from operators.homophonic import Homophones, copy_counts, dense_copies, make_homophones, sparse_copies
from operators.horizontal import Permutation, make_permutation
from operators.identity import ModelIdentity, input_embedding, tensor_sha256, vocabulary_sha256
from operators.mixing import Mixing, make_mixing, mix_rows
from operators.randomness import KeyStream
from operators.settings import MixSettings, ShakeSettings, SubstituteSettings
from operators.substitution import (
    Mechanism,
    keyed_uniforms,
    make_groups,
    spared_ids,
    substitutable_ids,
    substitute_padded,
    substitute_sequences,
    token_classes,
)
from operators.vertical import VerticalChain, build_chain, embedding_scale

SEED_BYTES = 32
CONFIG_MARKER = "shaketune"  # attribute of a shaken/recovered model's config


@dataclass(frozen=True)
class ShakeKey:
    """Horizontal permutation and vertical chain for one model, derived from a secret seed."""

    settings: ShakeSettings
    model: ModelIdentity
    seed: bytes = field(repr=False)
    copies: tuple[tuple[int, int], ...] = ()  # (plaintext id, copies) where > 1: homophonic keys only
    kept: tuple[int, ...] = ()  # substitution's keep_top most frequent public ids (they pass unchanged)
    # the public substitution mechanism, attached with :meth:`with_mechanism` (needs the public rows)
    mechanism: Mechanism | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.seed, bytes) or len(self.seed) != SEED_BYTES:
            raise ValueError(f"seed must be {SEED_BYTES} bytes")
        if bool(self.copies) != self.settings.homophones.enabled:
            raise ValueError("a copy table goes with homophone settings, and only with them")
        substitute = self.settings.substitute
        if bool(self.kept) != (substitute.enabled and substitute.keep_top > 0):
            raise ValueError("kept ids go with substitution settings that keep the top tokens, and only then")
        object.__setattr__(self, "copies", tuple((int(i), int(k)) for i, k in self.copies))
        object.__setattr__(self, "kept", tuple(sorted(int(i) for i in self.kept)))

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
        if self.kept:
            h.update(b"kept" + repr(self.kept).encode())
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

    @property
    def substitutes(self) -> bool:
        """Whether occurrences are substituted before the permutation."""
        return self.settings.substitute.enabled

    def with_mechanism(self, embedding: torch.Tensor, tokens: Sequence[str]) -> ShakeKey:
        """This key with its substitution mechanism attached, built from the public pretrained input
        embedding (checked against the key) and the vocabulary's token strings; a key that substitutes
        nothing is returned as it is."""
        if not self.substitutes or self.mechanism is not None:
            return self
        if tensor_sha256(embedding) != self.model.embedding_sha256:
            raise KeyMismatchError(
                f"substitution needs the pretrained embedding of {self.model.name!r}; this one differs"
            )
        if len(tokens) != self.model.vocab_size:
            raise KeyMismatchError(f"{len(tokens)} token strings for a vocabulary of {self.model.vocab_size}")
        mechanism = build_mechanism(
            self.settings.substitute,
            embedding,
            tokens,
            self.model.special_ids,
            self.kept,
            self.model.embedding_sha256,
        )
        return replace(self, mechanism=mechanism)

    def _mechanism(self) -> Mechanism:
        if self.mechanism is None:
            raise ShaketuneError(
                "this key substitutes tokens, which needs the pretrained model's embedding: attach it with "
                "ShakeKey.with_mechanism before encoding"
            )
        return self.mechanism

    @cached_property
    def _prf_key(self) -> bytes:
        """The key of the per-occurrence draws (BLAKE2b takes at most 64 bytes)."""
        return self._stream("substitute").random_bytes(32)

    def _draws(self, windows: Any) -> torch.Tensor:
        return keyed_uniforms(windows, self._prf_key)

    def substitute(self, sequences: Sequence[Sequence[int]]) -> list[list[int]]:
        """Plaintext id sequences with every substitutable occurrence drawn from its group (the same text
        always gives the same result); unchanged copies when the key substitutes nothing."""
        if not self.substitutes:
            return [list(seq) for seq in sequences]
        return substitute_sequences(self._mechanism(), sequences, self._draws)

    def substitute_batch(self, ids: torch.Tensor, lengths: Sequence[int] | None = None) -> torch.Tensor:
        """The same for a padded batch (rows of ``lengths`` real ids; default: whole rows)."""
        if not self.substitutes:
            return ids
        lengths = [ids.shape[1]] * ids.shape[0] if lengths is None else lengths
        return substitute_padded(self._mechanism(), ids.cpu(), lengths, self._draws).to(ids.device)

    def occurrence_stream(self, label: str) -> KeyStream:
        """A reproducible stream of copy choices (for measurements that must repeat exactly)."""
        return self._stream(f"occurrences/{label}")

    @property
    def mixes(self) -> bool:
        """Whether embedding rows are mixed with their neighbours before the vertical chain."""
        return self.settings.mix.enabled

    def mixing_of(self, rows: torch.Tensor) -> Mixing | None:
        """The public mixing of a vocabulary matrix (neighbours and weights from its own rows), None when
        the key mixes nothing: what the informed attacker computes from the public rows."""
        if not self.mixes:
            return None
        return mixing_for(self.settings.mix, rows, self.model.special_ids)

    def mixed_rows(self, matrix: torch.Tensor, label: str = "input") -> torch.Tensor:
        """``matrix`` (a pretrained vocabulary matrix) mixed and noised as the key says; unchanged when
        the key mixes nothing. ``label`` separates the noise of different matrices."""
        mixing = self.mixing_of(matrix)
        if mixing is None:
            return matrix
        scale = embedding_scale(matrix)
        return mix_rows(matrix, mixing, self.settings.mix.noise, scale, self._stream("mix"), label)

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


_BUILT: OrderedDict[tuple, Any] = OrderedDict()  # mechanisms and groups built lately, by what they depend on
_BUILT_KEPT = 8


def _remembered(cache_key: tuple | None, build: Any) -> Any:
    """``build()``, kept per process for the last few keys (None: not kept)."""
    if cache_key is None:
        return build()
    if cache_key not in _BUILT:
        _BUILT[cache_key] = build()
        while len(_BUILT) > _BUILT_KEPT:
            _BUILT.popitem(last=False)
    _BUILT.move_to_end(cache_key)
    return _BUILT[cache_key]


def build_mechanism(
    settings: SubstituteSettings,
    embedding: torch.Tensor,
    tokens: Sequence[str],
    special_ids: Sequence[int],
    kept: Sequence[int],
    embedding_sha256: str = "",
) -> Mechanism:
    """The public substitution mechanism for these settings, rows and kept ids. With the embedding's hash,
    mechanisms (their normalisers take seconds) and groups (clusters take seconds, and do not depend on
    epsilon) are kept per process for the last few settings."""
    rows = embedding.detach().to("cpu", torch.float32)
    shape = replace(settings, epsilon=1.0)  # what the groups depend on

    classes = token_classes(tokens)

    def groups() -> Any:
        mask = substitutable_ids(settings, classes, special_ids, kept)
        spared = spared_ids(settings, classes, kept)
        whole = "words" in settings.classes  # kept tokens are then drawn with their word
        return make_groups(settings, rows, classes, mask, spared if whole else None, spared)

    def mechanism() -> Mechanism:
        built = _remembered(known and ("groups", known, shape, tuple(kept)), groups)
        return Mechanism(settings, rows, built, classes.continuation)

    known = embedding_sha256 or None
    return _remembered(known and ("mechanism", known, settings, tuple(kept)), mechanism)


def mixing_for(settings: MixSettings, rows: torch.Tensor, special_ids: Sequence[int]) -> Mixing:
    """The mixing of ``rows`` under ``settings`` (its neighbour search takes seconds), kept per process for
    the last few matrices and settings."""
    rows = rows.detach().to("cpu", torch.float32)
    known = ("mixing", tensor_sha256(rows), settings.k, settings.tau, tuple(special_ids))
    return _remembered(known, lambda: make_mixing(rows, settings, special_ids))


def kept_ids(prior: torch.Tensor, special_ids: Sequence[int], keep_top: int) -> tuple[int, ...]:
    """The ``keep_top`` most frequent ids of public counts ``prior`` (special tokens and ids the public
    text never holds are not counted)."""
    counts = torch.as_tensor(prior, dtype=torch.float64).clone()
    counts[list(special_ids)] = 0
    order = torch.argsort(-counts, stable=True)[:keep_top]
    return tuple(sorted(int(i) for i in order if counts[i] > 0))


def _check_prior(prior: torch.Tensor | None, vocab_size: int, needs: str) -> torch.Tensor:
    if prior is None or float(prior.sum()) == 0:
        raise SettingsError(f"{needs} need public text (its token frequencies)")
    if len(prior) != vocab_size:
        raise SettingsError(f"prior has {len(prior)} entries; the vocabulary {vocab_size}")
    return prior


def generate_key(
    settings: ShakeSettings,
    model: nn.Module,
    tokenizer: Any,
    name: str,
    seed: bytes | None = None,
    prior: torch.Tensor | None = None,
) -> ShakeKey:
    """A new key for ``model`` from a cryptographically secure seed (``seed`` only for tests).

    Homophone settings need ``prior``, public token counts per plaintext id, to size each token's copies;
    substitution that keeps the most frequent tokens needs it to know which they are.
    """
    identity = ModelIdentity.of(model, tokenizer, name)
    copies: tuple[tuple[int, int], ...] = ()
    kept: tuple[int, ...] = ()
    substitute = settings.substitute
    if substitute.enabled and substitute.keep_top > 0:
        public = _check_prior(prior, identity.vocab_size, "substitution settings with keep_top")
        kept = kept_ids(public, identity.special_ids, substitute.keep_top)
        if not kept:
            raise SettingsError("the public text holds no token to keep; set keep_top to 0")
    if settings.homophones.enabled:
        prior = _check_prior(prior, identity.vocab_size, "homophone settings")
        counts = copy_counts(prior, identity.special_ids, settings.homophones.max_share)
        copies = sparse_copies(counts)
        if not copies:  # nothing is frequent enough to split: the map stays 1:1
            raise SettingsError(
                f"no token of the public text has a share above max_share "
                f"{settings.homophones.max_share}; lower it or drop homophones"
            )
    seed = secrets.token_bytes(SEED_BYTES) if seed is None else seed
    return ShakeKey(settings, identity, seed, copies, kept)
