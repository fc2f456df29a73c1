"""Decoding substituted text with the public language model: the informed attack where one is at hand.

The bigram decoder (:mod:`objectives.attacks.decoding`) reads context through public word pairs. Where the
target is a causal language model, the attacker holds its public pretrained weights too: a model of what
comes next that sees the whole sentence so far. This attack starts from the bigram decoder's reading and
re-reads every substituted occurrence ``passes`` times: each of its candidate inputs is scored by its
posterior under the bigram decoder (mechanism likelihood and bigram context on both sides, by
forward-backward) plus the public LM's log-probability of the candidate after the current reading of the
sentence before it, times a weight; the best candidate is taken, and the next pass runs the LM on the new
reading. The weight is chosen as the bigram decoder's is: on held-out public
text the attacker substituted with its own draws, among :data:`WEIGHTS` and 0 (the bigram reading kept).

Only a causal LM is used: a masked LM would read both sides, but no public one comes with the encoders
this tool tunes offline (docs/leakage.md, Known limits).
"""

from __future__ import annotations

from typing import Any

import torch

from objectives.attacks.context import AttackContext, Guess
from objectives.attacks.decoding import DecodingAttack, Lattice, best_of, held_out, node_scores
from objectives.tokens import pad_batch

WEIGHTS = (0.1, 0.25, 0.5, 1.0)  # the LM's weights the attacker tries (0: the bigram reading kept)
PASSES = 2
LOGITS = 2**26  # at most this many logits per forward pass (256 MB of floats): sets the batch size


def is_causal_lm(model: Any) -> bool:
    """Whether ``model`` is a Hugging Face causal LM (a next-token head over the vocabulary)."""
    try:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    except ImportError:  # pragma: no cover - transformers is a dependency
        return False
    return model is not None and type(model).__name__ in set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())


class LanguageModelDecodingAttack:
    """The bigram decoder's posteriors, re-read with the public causal LM's left context."""

    name = "decoding_lm"

    def __init__(self, passes: int = PASSES) -> None:
        self.passes = passes
        self.base = DecodingAttack()

    def guess(self, context: AttackContext) -> Guess:
        model = context.public.model
        if not is_causal_lm(model):
            raise ValueError("decoding_lm needs the public causal language model")
        reading = self.base.read(context)
        weight = self._weight(context, model)
        guess = reading.guess
        if weight > 0:
            for _ in range(self.passes):
                left = lm_log_probs(model, guess, reading.lattice, context.device)
                guess = best_of(reading.lattice, reading.scores + weight * left)
        changed = int((guess != reading.guess).sum())
        note = f"LM weight {weight:g}; {changed} of {len(guess)} occurrences read otherwise than by bigrams"
        return Guess(context.observed.new_full((context.view.vocab_size,), -1), note, occurrences=guess)

    def _weight(self, context: AttackContext, model: Any) -> float:
        """The LM weight that best re-reads held-out public text the attacker substituted itself (one
        pass from the bigram reading); 0 where none beats the bigram reading there. Kept per mechanism."""
        mechanism = context.view.mechanism
        bigram_weight = self.base.read(context).weight

        def calibrate() -> float:
            held = held_out(mechanism, context.public, self.base.candidates)
            if held is None:
                return 0.0
            scores = node_scores(held.lattice, held.model, held.log_prior, bigram_weight)
            start = best_of(held.lattice, scores)
            left = lm_log_probs(model, start, held.lattice, context.device)
            found = {0.0: held.recovered(start)}
            for w in WEIGHTS:
                found[w] = held.recovered(best_of(held.lattice, scores + w * left))
            return max(found, key=lambda w: (found[w], -w))

        return context.public.derived(f"decoding-lm-weight/{id(mechanism)}", calibrate)


@torch.no_grad()
def lm_log_probs(model: Any, guess: torch.Tensor, lattice: Lattice, device: torch.device) -> torch.Tensor:
    """log P_LM(node's token | the current reading of its sentence before it), per lattice node; 0 for
    the nodes of occurrences with a single candidate (nothing to choose) and at a sentence's start."""
    scores = torch.zeros(len(lattice.token), dtype=torch.float64)
    position = lattice.position
    multi = lattice.sizes[lattice.occurrence] > 1
    starts = torch.nonzero(position == 0).flatten()
    ends = torch.cat([starts[1:], torch.tensor([len(guess)])])
    sentence_of = torch.cumsum((position == 0).long(), 0) - 1
    node_sentence = sentence_of[lattice.occurrence]
    node_position = position[lattice.occurrence]
    wanted = multi & (node_position > 0)
    model = model.to(device).eval()
    vocab = model.get_output_embeddings().weight.shape[0]
    longest = int((ends - starts).max()) if len(starts) else 1
    batch = max(1, LOGITS // (longest * vocab))
    for first in range(0, len(starts), batch):
        last = min(first + batch, len(starts))
        nodes = torch.nonzero(wanted & (node_sentence >= first) & (node_sentence < last)).flatten()
        if not len(nodes):
            continue
        sentences = [guess[a:b].tolist() for a, b in zip(starts[first:last], ends[first:last], strict=True)]
        ids, mask = pad_batch(sentences, 0)  # padding is masked, and no position reads past its sentence
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        normaliser = torch.logsumexp(logits, dim=-1)
        rows = (node_sentence[nodes] - first).to(device)
        at = (node_position[nodes] - 1).to(device)  # the logits before a token predict it
        token = lattice.token[nodes].clamp_max(vocab - 1).to(device)
        scores[nodes] = (logits[rows, at, token] - normaliser[rows, at]).double().cpu()
    return scores
