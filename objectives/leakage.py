"""Leakage of one key: the attack suite run on what the cloud would receive, scored with the key."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from objectives.attacks.suite import LeakageReport, run_attacks
from objectives.attacks.view import CloudView, GroundTruth, PublicKnowledge, bigram_counts, token_counts
from operators.identity import input_embedding
from operators.key import ShakeKey


def ground_truth(key: ShakeKey) -> GroundTruth:
    """The plaintext id of every shaken id, and which shaken ids are special tokens."""
    horizontal = key.horizontal
    special = torch.zeros(horizontal.size, dtype=torch.bool)
    special[key.encode(torch.as_tensor(key.model.special_ids, dtype=torch.long))] = True  # one copy each
    return GroundTruth(horizontal.plain_of_shaken, special)


def public_knowledge(
    pretrained: nn.Module, public_token_ids: Sequence[Sequence[int]], special_ids: Sequence[int]
) -> PublicKnowledge:
    """The attacker's knowledge: the public model's embedding, unigram and bigram counts of public text."""
    embedding = input_embedding(pretrained).detach().clone()
    size = len(embedding)
    return PublicKnowledge(
        embedding,
        token_counts(public_token_ids, size),
        tuple(special_ids),
        bigram_counts(public_token_ids, size),
    )


def measure_leakage(
    shaken: nn.Module,
    shaken_token_ids: Sequence[Sequence[int]],
    public: PublicKnowledge,
    key: ShakeKey,
    advance: Callable[[str], None] | None = None,
) -> LeakageReport:
    """Run the attack suite against the shaken model's embedding and the shaken training ids."""
    view = CloudView(input_embedding(shaken).detach(), shaken_token_ids)
    return run_attacks(view, public, ground_truth(key), advance=advance)
