"""What each side knows: the cloud's view, the public knowledge, and the truth used only for scoring."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from objectives.attacks.scoring import frequent_ids


def token_counts(token_ids: Sequence[Sequence[int]], size: int) -> torch.Tensor:
    """Occurrences of each id in ``token_ids`` (float64, length ``size``)."""
    flat = torch.as_tensor([i for seq in token_ids for i in seq], dtype=torch.long)
    return torch.bincount(flat, minlength=size).to(torch.float64)


def bigram_counts(token_ids: Sequence[Sequence[int]], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Adjacent pairs within each sequence, as (codes a * size + b, counts), codes ascending."""
    firsts = [a for seq in token_ids for a in seq[:-1]]
    seconds = [b for seq in token_ids for b in seq[1:]]
    codes = torch.as_tensor(firsts, dtype=torch.long) * size + torch.as_tensor(seconds, dtype=torch.long)
    unique, counts = torch.unique(codes, return_counts=True)
    return unique, counts.to(torch.float64)


@dataclass(frozen=True)
class CloudView:
    """Everything uploaded: the shaken input embedding and the shaken training token ids."""

    embedding: torch.Tensor  # shaken vocabulary x hidden
    token_ids: Sequence[Sequence[int]]
    merged: bool = False  # an attacker's view with homophone copies merged into groups
    model: Any = field(default=None, compare=False, repr=False)  # the trained body, where it differs
    # the informed attacker's substitution mechanism (operators.substitution.Mechanism), for a key that
    # substitutes: everything but the key's draws
    mechanism: Any = field(default=None, compare=False, repr=False)
    # the informed attacker's mixing (operators.mixing.Mixing), for a key that mixes rows: its public rows
    # are then the noiseless mixed ones
    mixing: Any = field(default=None, compare=False, repr=False)
    # the informed attacker's copy groups, for a homophonic key: per shaken id, the smallest shaken id of
    # its token's copies (which token that is stays secret)
    copies: torch.Tensor | None = field(default=None, compare=False, repr=False)

    @property
    def vocab_size(self) -> int:
        return int(self.embedding.shape[0])

    def counts(self) -> torch.Tensor:
        return token_counts(self.token_ids, self.vocab_size)


@dataclass(frozen=True)
class PublicKnowledge:
    """What anyone has: the pretrained embedding and unigram counts of public text (and, for a language
    model with an untied head, the pretrained output-embedding rows)."""

    embedding: torch.Tensor  # plaintext vocabulary x hidden
    prior: torch.Tensor  # counts per plaintext id, from text disjoint from the private data
    special_ids: tuple[int, ...]
    bigrams: tuple[torch.Tensor, torch.Tensor] | None = None  # bigram_counts of the same public text
    model: Any = field(default=None, compare=False, repr=False)  # the public pretrained model
    output_embedding: torch.Tensor | None = field(default=None, compare=False, repr=False)  # untied head
    token_ids: Sequence[Sequence[int]] | None = field(default=None, compare=False, repr=False)  # the text
    _derived: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def derived(self, name: str, compute: Callable[[], Any]) -> Any:
        """A quantity computed from the public knowledge alone, kept for every later attack."""
        if name not in self._derived:
            self._derived[name] = compute()
        return self._derived[name]

    @property
    def vocab_size(self) -> int:
        return int(self.embedding.shape[0])

    def of_output_rows(self) -> PublicKnowledge | None:
        """The same knowledge with the public output-embedding rows in place of the input embedding, to
        attack an untied head's shaken rows (None without an untied head). No model: the function attack
        reads the body, which the input rows' attacks already cover. Kept, so its derived quantities are
        computed once for every stage."""
        if self.output_embedding is None:
            return None
        return self.derived(
            "output-rows",
            lambda: PublicKnowledge(self.output_embedding, self.prior, self.special_ids, self.bigrams),
        )

    def mixed(self, mixing: Any, label: str) -> PublicKnowledge:
        """The same knowledge with every row replaced by its noiseless mix (``mixing`` of the rows, as
        operators.mixing computes it; ``label`` names the settings, so it is computed once): the rows an
        informed attacker compares a mixed upload with. The text and counts are the same."""
        return self.derived(
            f"mixed/{label}",
            lambda: PublicKnowledge(
                mixing.mixed(self.embedding), self.prior, self.special_ids, self.bigrams, self.model,
                token_ids=self.token_ids,
            ),
        )  # fmt: skip

    def frequent(self) -> torch.Tensor:
        """Bool per plaintext id: among the most frequent public tokens (the complement is "rare";
        objectives/attacks/scoring.py)."""
        return self.derived("frequent", lambda: frequent_ids(self.prior, self.special_ids))

    def candidates(self) -> torch.Tensor:
        """Plaintext ids an attack may answer with: all but the special tokens."""
        keep = torch.ones(self.vocab_size, dtype=torch.bool)
        keep[list(self.special_ids)] = False
        return torch.nonzero(keep).flatten()


@dataclass(frozen=True)
class GroundTruth:
    """The key's answer for every shaken id, and the plaintext of every occurrence of the attacked stream
    (objectives/attacks/scoring.py); used to score attacks, never shown to them."""

    plain_of_shaken: torch.Tensor  # plaintext id of each shaken id
    special: torch.Tensor  # bool per shaken id: a special token (not scored)
    occurrences: Any = field(default=None, compare=False, repr=False)  # scoring.Occurrences

    def recovery(self, guess: torch.Tensor, counts: torch.Tensor) -> float:
        """Share of private (non-special) token occurrences whose plaintext id ``guess`` recovers."""
        weights = counts.clone()
        weights[self.special] = 0
        total = float(weights.sum())
        if total == 0:
            return 0.0
        return float(weights[guess == self.plain_of_shaken].sum()) / total
