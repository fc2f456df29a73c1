"""Mechanism-aware decoding of substituted text: the informed attack on per-occurrence substitution.

The attacker knows the mechanism (settings, candidate groups, epsilon: everything but the key's draws).
It reads the upload through its best guess of the permutation (the ``posterior`` row attack, which with
exact rows recovers it whole) and decodes every sentence as a hidden Markov chain: the hidden tokens are
what the owner wrote, a bigram model of public text says which follow which, and the mechanism's
likelihood P(observed | written) links each hidden token to what was uploaded. Forward-backward gives
every occurrence's posterior; the guess is its most probable token. A few passes feed the guesses back:
the bigrams of the decoded upload join the public counts, so what the private text repeats (names,
recurring terms) strengthens its own decoding.

A bigram model of a few tens of thousands of public tokens is overconfident: left at full weight it
overrides even a mechanism that keeps 99% of tokens. As in noisy-channel decoding, the language model's
log-probabilities are weighted, and the attacker, who knows the mechanism, chooses the weight by
simulating it: it substitutes a held-out fifth of the public text with draws of its own and keeps the
weight that decodes it best (bigrams from the other four fifths).

Each substituted occurrence is decoded among the ``candidates`` inputs of its group with the highest
likelihood times public unigram frequency (pruning that a cleverer attacker need not do).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from objectives.attacks.context import AttackContext, Guess
from objectives.attacks.nearest import PosteriorAttack
from objectives.attacks.view import bigram_counts, token_counts
from operators.substitution import Mechanism


@dataclass(frozen=True, eq=False)
class Lattice:
    """Every occurrence's candidate inputs, as flat nodes: node n is token ``token[n]`` with emission
    log-likelihood ``emission[n]`` for occurrence ``occurrence[n]``; occurrence j's nodes are
    ``offsets[j] : offsets[j + 1]``."""

    token: torch.Tensor
    emission: torch.Tensor
    occurrence: torch.Tensor
    offsets: torch.Tensor
    position: torch.Tensor  # per occurrence: its index within its sentence
    last: torch.Tensor  # per occurrence: the last of its sentence

    @property
    def sizes(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]


class BigramModel:
    """log P(b | a) = log (c(a, b) + alpha P(b)) / (c(a) + alpha): bigram counts smoothed towards the
    unigram shares (Dirichlet), looked up by binary search in the sorted pair codes."""

    def __init__(self, codes: torch.Tensor, counts: torch.Tensor, unigram: torch.Tensor, alpha: float = 2.0):
        self.size = len(unigram)
        self.codes, self.counts = codes, counts.to(torch.float64)
        self.unigram = unigram.to(torch.float64)
        self.alpha = alpha
        first = codes // self.size
        self.outgoing = torch.zeros(self.size, dtype=torch.float64).index_add_(0, first, self.counts)

    def log_prob(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        code = a * self.size + b
        at = torch.searchsorted(self.codes, code).clamp_max(max(len(self.codes) - 1, 0))
        found = self.codes[at] == code if len(self.codes) else torch.zeros_like(code, dtype=torch.bool)
        pair = torch.where(found, self.counts[at] if len(self.codes) else 0.0, 0.0)
        return torch.log(pair + self.alpha * self.unigram[b]) - torch.log(self.outgoing[a] + self.alpha)

    def with_counts(self, codes: torch.Tensor, counts: torch.Tensor) -> BigramModel:
        """This model with more pair counts added."""
        merged, index = torch.unique(torch.cat([self.codes, codes]), return_inverse=True)
        summed = torch.zeros(len(merged), dtype=torch.float64)
        summed.index_add_(0, index, torch.cat([self.counts, counts.to(torch.float64)]))
        return BigramModel(merged, summed, self.unigram, self.alpha)


def sentence_codes(tokens: torch.Tensor, position: torch.Tensor, size: int) -> torch.Tensor:
    """Pair codes a * size + b of adjacent occurrences within sentences (flat stream, positions given)."""
    follows = position[1:] > 0
    return tokens[:-1][follows] * size + tokens[1:][follows]


WEIGHTS = (0.1, 0.2, 0.35, 0.6, 1.0)  # language-model weights the attacker tries
HELD_OUT = 0.2  # share of the public sentences it calibrates on (at most CALIBRATION sentences)
CALIBRATION = 400


@dataclass(frozen=True, eq=False)
class Reading:
    """The decoder's reading of a substituted upload: the flat stream's lattice (positions included),
    each occurrence's observed and decoded token, the last pass's node posteriors and the calibrated
    weight (what a second reader, such as :mod:`objectives.attacks.lm_decoding`, starts from)."""

    lattice: Lattice
    observed: torch.Tensor
    guess: torch.Tensor
    scores: torch.Tensor  # the last pass's node posteriors (node_scores)
    weight: float


class DecodingAttack:
    """Forward-backward decoding of the substituted stream with public bigrams and the mechanism's
    likelihood, the bigrams weighted as calibrated on public text; ``passes`` rounds, each adding the
    previous round's decoded tokens and bigrams to the counts."""

    name = "decoding"

    def __init__(self, candidates: int = 32, passes: int = 3, feedback: float = 1.0) -> None:
        self.candidates = candidates
        self.passes = passes
        self.feedback = feedback

    def guess(self, context: AttackContext) -> Guess:
        reading = self.read(context)
        changed = int((reading.guess != reading.observed).sum())
        note = (
            f"language-model weight {reading.weight:g}; {changed} of {len(reading.guess)} occurrences "
            "read otherwise"
        )
        return Guess(
            context.observed.new_full((context.view.vocab_size,), -1), note, occurrences=reading.guess
        )

    def read(self, context: AttackContext) -> Reading:
        """The decoded upload, computed once per attacked view (other attacks start from it)."""
        return context.cached(
            f"decoding/{self.candidates}/{self.passes}/{self.feedback}", lambda: self._read(context)
        )

    def _read(self, context: AttackContext) -> Reading:
        mechanism = context.view.mechanism
        if mechanism is None:
            raise ValueError("decoding needs the substitution mechanism (an informed view of such a key)")
        read = PosteriorAttack().guess(context).ids.clone()  # the permutation as the row attack reads it
        special = torch.as_tensor([i for i in context.public.special_ids if i < len(read)], dtype=torch.long)
        read[special] = special  # special tokens are never moved (public knowledge)
        flat, position = _flatten(context.view.token_ids)
        observed = read[flat].clamp_min(0)
        unigram = _unigram(context.public.prior)
        lattice = build_lattice(mechanism, observed, position, torch.log(unigram), self.candidates)
        codes, counts = context.public.bigrams
        public = BigramModel(codes, counts, unigram)
        weight = calibrated_weight(mechanism, context.public, self.candidates)
        model, guess, prior = public, observed, unigram
        scores = lattice.emission
        for _ in range(self.passes):
            scores = node_scores(lattice, model, torch.log(prior), weight)
            guess = best_of(lattice, scores)
            # what the decoded upload says joins the public counts: its pairs, and its tokens' frequencies
            # (tokens the public text lacks but the private text repeats are no longer starved)
            pairs, tally = torch.unique(sentence_codes(guess, position, model.size), return_counts=True)
            decoded = torch.bincount(guess, minlength=len(unigram)).to(torch.float64)
            prior = _unigram(context.public.prior.to(torch.float64) + self.feedback * decoded)
            model = BigramModel(public.codes, public.counts, prior, public.alpha).with_counts(
                pairs, self.feedback * tally.to(torch.float64)
            )
        return Reading(lattice, observed, guess, scores, weight)


def calibrated_weight(mechanism: Mechanism, public: Any, candidates: int) -> float:
    """The language-model weight that best decodes held-out public text the attacker substituted itself
    (its own draws, the same mechanism), with bigrams from the rest of the public text; 1.0 without
    public sentences to hold out. Kept per mechanism."""

    def calibrate() -> float:
        held = held_out(mechanism, public, candidates)
        if held is None:
            return 1.0
        scores = {w: held.recovered(decode(held.lattice, held.model, held.log_prior, w)) for w in WEIGHTS}
        return max(WEIGHTS, key=lambda w: (scores[w], w))

    return public.derived(f"decoding-weight/{id(mechanism)}", calibrate)


@dataclass(frozen=True, eq=False)
class HeldOut:
    """Public sentences the attacker substituted with its own draws, to calibrate a decoder on: their
    truth and lattice, which occurrences were substituted, and a bigram model of the other sentences."""

    truth: torch.Tensor
    chosen: torch.Tensor
    lattice: Lattice
    model: BigramModel
    log_prior: torch.Tensor

    def recovered(self, guess: torch.Tensor) -> float:
        """The share of the substituted occurrences ``guess`` reads right."""
        return float((guess == self.truth)[self.chosen].float().mean())


def held_out(mechanism: Mechanism, public: Any, candidates: int) -> HeldOut | None:
    """The last fifth of the public sentences (at most CALIBRATION), substituted with the attacker's own
    draws (seeded: the same every time); None with too few sentences or nothing substituted. Kept per
    mechanism."""

    def make() -> HeldOut | None:
        sentences = list(public.token_ids or [])
        held = min(int(len(sentences) * HELD_OUT), CALIBRATION)
        if held < 10:
            return None
        train, test = sentences[:-held], sentences[-held:]
        size = public.vocab_size
        codes, counts = bigram_counts(train, size)
        unigram = _unigram(token_counts(train, size))
        truth, position = _flatten(test)
        generator = torch.Generator().manual_seed(0)
        chosen = torch.nonzero(mechanism.chosen(truth, position)).flatten()
        if not len(chosen):
            return None
        uniform = torch.rand(len(chosen), generator=generator, dtype=torch.float64) * 0.999 + 5e-4
        drawn = truth.clone()
        drawn[chosen] = mechanism.sample(truth[chosen], uniform)
        lattice = build_lattice(mechanism, drawn, position, torch.log(unigram), candidates)
        return HeldOut(truth, chosen, lattice, BigramModel(codes, counts, unigram), torch.log(unigram))

    return public.derived(f"decoding-held-out/{id(mechanism)}/{candidates}", make)


def _flatten(sequences) -> tuple[torch.Tensor, torch.Tensor]:
    flat = torch.as_tensor([i for seq in sequences for i in seq], dtype=torch.long)
    position = torch.as_tensor([p for seq in sequences for p in range(len(seq))], dtype=torch.long)
    return flat, position


def _unigram(prior: torch.Tensor) -> torch.Tensor:
    smoothed = prior.to(torch.float64) + 0.5
    return smoothed / smoothed.sum()


def build_lattice(
    mechanism: Mechanism, observed: torch.Tensor, position: torch.Tensor, log_prior: torch.Tensor, width: int
) -> Lattice:
    """Candidate inputs per occurrence: itself alone where the observed token is never a substitute's
    output, else its group's ``width`` likeliest inputs (mechanism likelihood times unigram prior) and,
    where the output also passes unchanged when written (a kept token under ``kept`` candidates), itself
    at likelihood 1."""
    substituted = mechanism.outputs[observed]
    distinct, which = torch.unique(observed[substituted], return_inverse=True)
    inputs, likelihood = mechanism.likely_inputs(distinct, log_prior, width)
    if not bool(mechanism.substitutable[distinct].all()):
        inputs, likelihood = with_unchanged(mechanism, distinct, inputs, likelihood)
    finite = torch.isfinite(likelihood)
    sizes = torch.ones(len(observed), dtype=torch.long)
    sizes[substituted] = finite.sum(dim=1)[which]
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(sizes, 0)])
    token = torch.repeat_interleave(observed, sizes)
    emission = torch.zeros(len(token), dtype=torch.float64)
    occurrence = torch.repeat_interleave(torch.arange(len(observed)), sizes)
    nodes = torch.nonzero(substituted[occurrence]).flatten()
    rank = nodes - offsets[occurrence[nodes]]  # finite likelihoods come first (top-k, padded after)
    row = which[torch.cumsum(substituted.long(), 0)[occurrence[nodes]] - 1]
    token[nodes] = inputs[row, rank]
    emission[nodes] = likelihood[row, rank]
    last = torch.ones(len(observed), dtype=torch.bool)
    last[:-1] = position[1:] == 0
    return Lattice(token, emission, occurrence, offsets, position, last)


def with_unchanged(
    mechanism: Mechanism, outputs: torch.Tensor, inputs: torch.Tensor, likelihood: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidate lists with each output that also passes unchanged added as its own input at likelihood
    1 (once), the finite likelihoods first."""
    unchanged = ~mechanism.substitutable[outputs]
    likelihood = likelihood.masked_fill(unchanged[:, None] & (inputs == outputs[:, None]), -torch.inf)
    itself = torch.where(unchanged, 0.0, -torch.inf).to(likelihood.dtype)
    inputs = torch.cat([outputs[:, None], inputs], dim=1)
    likelihood = torch.cat([itself[:, None], likelihood], dim=1)
    order = torch.argsort(likelihood, dim=1, descending=True, stable=True)
    return inputs.gather(1, order), likelihood.gather(1, order)


def _edges(lattice: Lattice, at: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (node of occurrence j - 1, node of occurrence j) pair for the occurrences ``at``."""
    sizes = lattice.sizes
    before, here = sizes[at - 1], sizes[at]
    pairs = before * here
    block = torch.repeat_interleave(torch.arange(len(at)), pairs)
    start = torch.cumsum(pairs, 0) - pairs
    local = torch.arange(int(pairs.sum())) - start[block]
    src = lattice.offsets[at - 1][block] + local // here[block]
    dst = lattice.offsets[at][block] + local % here[block]
    return src, dst


def _scatter_logsumexp(values: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    peak = torch.full((size,), -torch.inf, dtype=values.dtype).scatter_reduce(0, index, values, "amax")
    safe = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    mass = torch.zeros(size, dtype=values.dtype).index_add_(0, index, torch.exp(values - safe[index]))
    return safe + torch.log(mass)


def decode(
    lattice: Lattice, model: BigramModel, log_prior: torch.Tensor, weight: float = 1.0
) -> torch.Tensor:
    """Forward-backward over the lattice, the language model's log-probabilities times ``weight``; the
    most probable token of every occurrence."""
    return best_of(lattice, node_scores(lattice, model, log_prior, weight))


def node_scores(
    lattice: Lattice, model: BigramModel, log_prior: torch.Tensor, weight: float = 1.0
) -> torch.Tensor:
    """Every node's log posterior (up to a per-sentence constant) by forward-backward, the language
    model's log-probabilities times ``weight``."""
    nodes = len(lattice.token)
    alpha = torch.full((nodes,), -torch.inf, dtype=torch.float64)
    beta = torch.zeros(nodes, dtype=torch.float64)
    node_position = lattice.position[lattice.occurrence]
    first = node_position == 0
    alpha[first] = lattice.emission[first] + weight * log_prior[lattice.token[first]].to(torch.float64)
    positions = int(lattice.position.max()) + 1 if len(lattice.position) else 0

    def step(p: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The edges into position p and their transition log-probabilities (made again going back,
        rather than kept: there can be tens of millions)."""
        src, dst = _edges(lattice, torch.nonzero(lattice.position == p).flatten())
        return src, dst, weight * model.log_prob(lattice.token[src], lattice.token[dst])

    for p in range(1, positions):
        src, dst, transition = step(p)
        summed = _scatter_logsumexp(alpha[src] + transition, dst, nodes)
        alpha[dst] = summed[dst] + lattice.emission[dst]
    for p in reversed(range(1, positions)):
        src, dst, transition = step(p)
        summed = _scatter_logsumexp(transition + lattice.emission[dst] + beta[dst], src, nodes)
        beta[src] = summed[src]
    return alpha + beta


def best_of(lattice: Lattice, scores: torch.Tensor) -> torch.Tensor:
    """Every occurrence's token with the highest node score (the last of equals)."""
    occurrences = len(lattice.position)
    best = torch.full((occurrences,), -torch.inf, dtype=torch.float64)
    best = best.scatter_reduce(0, lattice.occurrence, scores, "amax")
    winner = torch.nonzero(scores >= best[lattice.occurrence]).flatten()
    choice = torch.full((occurrences,), -1, dtype=torch.long)
    choice.scatter_reduce_(0, lattice.occurrence[winner], winner, "amax", include_self=True)
    return lattice.token[choice]
