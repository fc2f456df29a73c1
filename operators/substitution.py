"""Per-occurrence substitution: before the permutation, each occurrence of a token is replaced by a token
drawn from its candidate group with the exponential mechanism (metric local DP text sanitisation, as in
SanText, ACL Findings 2021, and CusText, ACL Findings 2023).

Groups. Every token that may be substituted belongs to exactly one candidate group, and groups are
disjoint, so an output reveals its group (the candidate set is public). A group never mixes word starts
with word continuations (a piece stays a piece, so token counts never change) nor numbers with other
tokens. ``vocabulary``: one group per kind of token (SanText over the whole vocabulary of that kind);
``clusters``: disjoint clusters of k nearest tokens within a kind (CusText); ``kept``: a substituted token
is drawn among the kept (most frequent public) tokens of its kind, so a rare word becomes a common word
near it in meaning and never another rare one (a kind without kept tokens, numbers for instance, is drawn
in its whole vocabulary as with ``vocabulary``). Under ``kept`` an output is ambiguous: a common word in
the upload is either written so or a rare word's draw. ``mask``: every substituted token becomes the
vocabulary's unknown token (``[UNK]``): one output for all, so an occurrence tells nothing of what was
written (0-local DP; epsilon is not used), only that something was (as every group does).

Mechanism. P(y | x) = exp(eps u(x, y) / 2) / Z(x) over the y of x's group, u(x, y) = -d(x, y) / D(x), d the
Euclidean distance between the public pretrained input-embedding rows (under ``kept``, between the rows scaled
to unit length: the nearest rows by raw distance are those of similar norm, not meaning) and D(x) the largest
distance from x within its group. As u lies in [-1, 0] for every pair, for any two tokens x, x' drawn in one
group and any output y, P(y | x) <= exp(eps) P(y | x'): eps-local differential privacy per occurrence among
the inputs of a group, and none between groups (under ``kept`` the guarantee is only worth its name at small
eps, where the draw keeps no meaning; where it keeps meaning, eps >= 100, what protects a rare word is how
many rare words share its nearest common ones, and only attacks measure that). It bounds what one occurrence
tells an attacker beyond its prior; it does not stop a frequent token being guessed from its context.

Under ``kept``, only the substitutable words and pieces are drawn by distance; what carries no meaning
the model needs and may carry a secret is drawn uniformly (epsilon 0): numbers, drawn among their
kind, and the kept tokens of a word substituted whole (a rare e-mail address's frequent pieces).

Who passes unchanged: special tokens, tokens the tokenizer never produces from text (bracketed, such as
``[unused5]`` or ``<0x0A>``), and the ``keep_top`` most frequent public tokens unless a class substituted
whatever its frequency holds them (``numbers``: a digit anywhere; ``pieces``: word continuations). With
the class ``words``, a word (a word start and the continuations after it) is substituted whole when any
of its tokens is: a rare name or e-mail address loses its frequent pieces too, a frequent word split in
pieces stays whole. A kept token substituted so is drawn in the group of its nearest substitutable token
of its kind (under ``kept``, among the kept tokens of its kind). Except under ``kept``, nothing is ever
replaced by a kept token: kept tokens are never outputs.

Draws. An occurrence's draw is a keyed hash (BLAKE2b, keyed from the key's seed) of the plaintext ids in a
window of :data:`WINDOW` tokens either side: re-encoding the same text gives the same upload (no fresh
samples to average), and a phrase repeated in another sentence gets the same draws in its interior.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from operators.errors import SettingsError
from operators.settings import SubstituteSettings

WINDOW = 2  # plaintext tokens either side that key an occurrence's draw
CHUNK = 512  # rows of distances computed at once
_BRACKETED = re.compile(r"^(\[.*\]|<.*>)$")
_MARKERS = ("##", "\u0120", "\u2581")  # WordPiece continuation; byte-level BPE and SentencePiece word start
KIND_NAMES = ("word", "number", "piece", "number piece")
PLACEHOLDERS = ("[UNK]", "<unk>", "<|endoftext|>")  # what ``mask`` writes, the first the vocabulary has


@dataclass(frozen=True, eq=False)
class TokenClasses:
    """What each vocabulary id is, from its token string alone."""

    continuation: torch.Tensor  # bool: continues a word (WordPiece ``##x``; a BPE token without a space)
    numeric: torch.Tensor  # bool: holds a digit
    unproducible: torch.Tensor  # bool: bracketed tokens the tokenizer never produces from text
    placeholder: int = -1  # the unknown token (``[UNK]``, ``<unk>``), -1 if the vocabulary has none

    @property
    def kind(self) -> torch.Tensor:
        """0 word, 1 number, 2 piece, 3 number piece (see :data:`KIND_NAMES`)."""
        return self.continuation.long() * 2 + self.numeric.long()


def token_classes(tokens: Sequence[str]) -> TokenClasses:
    """Classify every token string; the marker convention (``##``, ``Ġ`` or ``▁``) is read off the
    vocabulary itself (the one most tokens carry, if any carries one)."""
    counts = {marker: sum(t.startswith(marker) for t in tokens) for marker in _MARKERS}
    marker = max(counts, key=counts.get)
    if counts[marker] < 0.01 * max(len(tokens), 1):
        marker = ""
    continuation, numeric, unproducible = [], [], []
    for token in tokens:
        marked = bool(marker) and token.startswith(marker)
        text = token[len(marker) :] if marked else token
        bracketed = not token or bool(_BRACKETED.match(token))
        continuation.append(not bracketed and (marked if marker == "##" else bool(marker) and not marked))
        numeric.append(not bracketed and any(ch.isdigit() for ch in text))
        unproducible.append(bracketed)
    placeholder = next((tokens.index(t) for t in PLACEHOLDERS if t in tokens), -1)
    return TokenClasses(
        torch.tensor(continuation), torch.tensor(numeric), torch.tensor(unproducible), placeholder
    )


@dataclass(frozen=True, eq=False)
class Groups:
    """Disjoint candidate groups: ``group_of[i]`` (-1: never an output), members of group g in
    ``members[offsets[g] : offsets[g + 1]]`` (ascending ids), the only possible outputs. ``input_of[i]``
    is the group token i is drawn in when it is substituted: its own, or for a kept token (substituted
    only with its word) the group of its nearest member of its kind; -1 for tokens never substituted.
    ``substitutable[i]``: token i is substituted wherever it occurs (the members, except under ``kept``,
    whose members are kept tokens and whose inputs are the rare ones)."""

    group_of: torch.Tensor
    offsets: torch.Tensor
    members: torch.Tensor
    input_of: torch.Tensor
    substitutable: torch.Tensor

    @property
    def count(self) -> int:
        return int(self.offsets.numel()) - 1

    def members_of(self, group: int) -> torch.Tensor:
        return self.members[int(self.offsets[group]) : int(self.offsets[group + 1])]

    @property
    def outputs(self) -> torch.Tensor:
        """Ids an occurrence may be drawn as."""
        return self.group_of >= 0

    def drawn_among_kept(self) -> torch.Tensor:
        """Per id: drawn in a group whose members are kept tokens (``kept`` candidates' word groups)."""
        kept_group = torch.zeros(self.count + 1, dtype=torch.bool)  # the last entry: no group
        for group in range(self.count):
            kept_group[group] = not bool(self.substitutable[self.members_of(group)].any())
        return kept_group[self.input_of]

    def sizes(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def inputs_of(self, group: int) -> torch.Tensor:
        """Every token drawn in ``group`` when substituted: its members and the kept tokens attached."""
        return torch.nonzero(self.input_of == group).flatten()


def substitutable_ids(
    settings: SubstituteSettings, classes: TokenClasses, special_ids: Sequence[int], kept: Sequence[int]
) -> torch.Tensor:
    """Which ids are substituted by themselves: all but special and unproducible tokens and the kept ones
    (``kept``: the ``keep_top`` most frequent public tokens), whose classes in ``settings.classes`` are
    substituted anyway."""
    producible = ~classes.unproducible.clone()
    producible[list(special_ids)] = False
    return producible & ~spared_ids(settings, classes, kept)


def spared_ids(settings: SubstituteSettings, classes: TokenClasses, kept: Sequence[int]) -> torch.Tensor:
    """The kept ids that pass unchanged by themselves (those of an always-substituted class do not)."""
    spared = torch.zeros(len(classes.numeric), dtype=torch.bool)
    spared[list(kept)] = True
    if "numbers" in settings.classes:
        spared &= ~classes.numeric
    if "pieces" in settings.classes:
        spared &= ~classes.continuation
    return spared & ~classes.unproducible


def make_groups(
    settings: SubstituteSettings,
    embedding: torch.Tensor,
    classes: TokenClasses,
    substitutable: torch.Tensor,
    kept: torch.Tensor | None = None,
    spared: torch.Tensor | None = None,
) -> Groups:
    """One group per kind of token (``vocabulary``), disjoint clusters of ``settings.k`` nearest tokens
    within each kind (``clusters``), or per kind the ``spared`` tokens (those passing unchanged) as the
    outputs of every substitutable token of the kind (``kept``; a kind with none falls back to
    ``vocabulary``), or the unknown token as the one output of every substitutable token (``mask``);
    ``kept`` tokens (substituted only with their word) are attached to the group of
    their nearest member."""
    kept = torch.zeros_like(substitutable) if kept is None else kept
    spared = torch.zeros_like(substitutable) if spared is None else spared
    kinds = classes.kind
    parts: list[torch.Tensor] = []  # each group's members (its outputs)
    drawn: list[torch.Tensor] = []  # each group's substitutable inputs
    if settings.candidates == "mask":
        if classes.placeholder < 0:
            raise SettingsError("substitute candidates 'mask' needs an unknown token ([UNK] or <unk>)")
        parts.append(torch.tensor([classes.placeholder]))
        drawn.append(torch.nonzero(substitutable).flatten())
    for kind in range(len(KIND_NAMES) if settings.candidates != "mask" else 0):
        ids = torch.nonzero(substitutable & (kinds == kind)).flatten()
        if not len(ids):
            continue
        outputs = torch.nonzero(spared & (kinds == kind)).flatten()
        if settings.candidates == "kept" and len(outputs):
            parts.append(outputs)
            drawn.append(ids)
        elif settings.candidates != "clusters" or len(ids) <= settings.k:
            parts.append(ids)
            drawn.append(ids)
        else:
            clusters = [ids[local] for local in greedy_clusters(embedding[ids].float(), settings.k)]
            parts.extend(clusters)
            drawn.extend(clusters)
    size = len(substitutable)
    group_of = torch.full((size,), -1, dtype=torch.long)
    inputs = torch.full((size,), -1, dtype=torch.long)
    for index, (members, sources) in enumerate(zip(parts, drawn, strict=True)):
        group_of[members] = index
        inputs[sources] = index
    sizes = torch.tensor([len(ids) for ids in parts], dtype=torch.long)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(sizes, 0)])
    members = torch.cat([ids.sort().values for ids in parts]) if parts else torch.zeros(0, dtype=torch.long)
    input_of = attach_kept(embedding, kinds, substitutable, kept, inputs, group_of)
    return Groups(group_of, offsets, members, input_of, inputs >= 0)


def attach_kept(
    embedding: torch.Tensor,
    kinds: torch.Tensor,
    substitutable: torch.Tensor,
    kept: torch.Tensor,
    inputs: torch.Tensor,
    group_of: torch.Tensor,
) -> torch.Tensor:
    """``Groups.input_of``: substitutable tokens in the group they are drawn in (``inputs``), each
    ``kept`` token (substituted only with its word) in its own group if it is an output (``group_of``),
    else in the group its nearest substitutable token of its kind is drawn in."""
    input_of = inputs.clone()
    own = kept & (group_of >= 0)
    input_of[own] = group_of[own]
    rows = embedding.float()
    for kind in range(len(KIND_NAMES)):
        targets = torch.nonzero(substitutable & (kinds == kind)).flatten()
        attached = torch.nonzero(kept & ~own & (kinds == kind)).flatten()
        for start in range(0, len(attached) if len(targets) else 0, CHUNK):
            ids = attached[start : start + CHUNK]
            nearest = torch.cdist(rows[ids], rows[targets]).argmin(dim=1)
            input_of[ids] = inputs[targets[nearest]]
    return input_of


def greedy_clusters(rows: torch.Tensor, k: int) -> list[torch.Tensor]:
    """CusText's partition: in id order, every token not yet placed takes its k-1 nearest unplaced tokens
    as its cluster; a last cluster of one joins the one before. Returns local index tensors.

    Neighbour lists (4k long) are computed among the unplaced tokens; where a token's list has run out of
    unplaced ones, its distances to every unplaced token are computed, and once a quarter of the tokens
    listed have been placed the lists are computed anew among those left."""
    n = len(rows)
    placed = np.zeros(n, dtype=bool)
    clusters: list[np.ndarray] = []
    remaining = np.arange(n)
    while len(remaining):
        reach = min(len(remaining), 4 * k)
        lists = remaining[_nearest(rows[torch.from_numpy(remaining)], reach)]
        listed_count = len(remaining)
        for position, x in enumerate(remaining):
            if placed[x]:
                continue
            free = lists[position][~placed[lists[position]]]
            if len(free) < k and reach < listed_count:
                unplaced = np.flatnonzero(~placed)
                if len(unplaced) < 0.75 * listed_count:
                    break  # lists are stale: compute them anew among the tokens left
                distance = torch.cdist(rows[x : x + 1], rows[torch.from_numpy(unplaced)])[0]
                free = unplaced[torch.argsort(distance, stable=True).numpy()]
            chosen = free[:k]
            if x not in chosen:  # ties at distance 0 may list another first; x always joins its own
                chosen = np.concatenate([[x], chosen[: k - 1]])
            placed[chosen] = True
            clusters.append(chosen)
        remaining = np.flatnonzero(~placed)
    if len(clusters) > 1 and len(clusters[-1]) == 1:
        clusters[-2] = np.concatenate([clusters[-2], clusters.pop()])
    return [torch.from_numpy(np.sort(c)).long() for c in clusters]


def _nearest(rows: torch.Tensor, m: int) -> np.ndarray:
    """The m nearest rows of every row (itself first where distances tie at 0), in chunks."""
    out = np.empty((len(rows), m), dtype=np.int64)
    for start in range(0, len(rows), CHUNK):
        distance = torch.cdist(rows[start : start + CHUNK], rows)
        distance[torch.arange(len(distance)), torch.arange(start, start + len(distance))] = -1.0
        out[start : start + CHUNK] = torch.topk(distance, m, largest=False, sorted=True).indices.numpy()
    return out


class Mechanism:
    """The public part of substitution: groups, epsilon, and the exponential mechanism over them.
    Everything here follows from the settings, the public embedding and the kept ids, so the informed
    attacker has it too; the draws need the key (:func:`substitute_sequences`)."""

    def __init__(
        self,
        settings: SubstituteSettings,
        embedding: torch.Tensor,
        groups: Groups,
        continuation: torch.Tensor | None = None,
    ) -> None:
        if not settings.enabled:
            raise SettingsError("substitution is off (epsilon infinite): there is no mechanism")
        self.settings = settings
        self.epsilon = float(settings.epsilon)
        self.embedding = embedding.detach().to(torch.float32)
        self.epsilon_of = torch.full((len(groups.group_of),), self.epsilon, dtype=torch.float64)
        if settings.candidates == "kept":
            # by direction: raw distances to common words follow row norms, not meaning
            self.embedding = torch.nn.functional.normalize(self.embedding, dim=1)
            self.epsilon_of[~groups.substitutable | ~groups.drawn_among_kept()] = 0.0
        self.groups = groups
        size = len(groups.group_of)
        self.continuation = torch.zeros(size, dtype=torch.bool) if continuation is None else continuation
        self.whole_words = "words" in settings.classes

    def __repr__(self) -> str:
        return f"Mechanism(epsilon={self.epsilon:g}, groups={self.groups.count})"

    @property
    def substitutable(self) -> torch.Tensor:
        """Ids substituted wherever they occur."""
        return self.groups.substitutable

    @property
    def outputs(self) -> torch.Tensor:
        """Ids an occurrence may be drawn as (the substitutable ones, except under ``kept``)."""
        return self.groups.outputs

    @property
    def drawable(self) -> torch.Tensor:
        """Ids that may be substituted: by themselves, or (kept ones) with their word."""
        return self.groups.input_of >= 0

    def chosen(self, flat: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """Which occurrences of a flat stream (``position``: each one's index in its sequence) are
        substituted: the substitutable ones and, with whole words, every drawable token of a word that
        holds one."""
        chosen = self.substitutable[flat]
        if not self.whole_words or not len(flat):
            return chosen
        starts = (position == 0) | ~self.continuation[flat]
        word = torch.cumsum(starts.long(), 0) - 1
        touched = torch.zeros(int(word[-1]) + 1, dtype=torch.bool).index_put_(
            (word,), chosen, accumulate=True
        )
        return self.drawable[flat] & touched[word]

    def _distances(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Euclidean distances between the rows of ids ``a`` and ``b`` (float32; exactly 0 between an id
        and itself, whatever the rounding)."""
        distance = torch.cdist(self.embedding[a], self.embedding[b])
        return distance.masked_fill_(a[:, None] == b[None, :], 0.0)

    def _logits(self, x: torch.Tensor, members: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """eps u(x, y) / 2 for every x (rows) and y in ``members`` (columns), and D(x), the row's largest
        distance."""
        distance = self._distances(x, members)
        scale = distance.max(dim=1).values
        epsilon = self.epsilon_of[x].to(distance.dtype)[:, None]
        return -epsilon * distance / (2.0 * scale.clamp_min(1e-12)[:, None]), scale

    @cached_property
    def normalisers(self) -> tuple[torch.Tensor, torch.Tensor]:
        """D(x) and log Z(x) for every drawable x (0 elsewhere): what the likelihood of an output under
        each possible input needs."""
        size = len(self.groups.group_of)
        scale, log_z = torch.zeros(size, dtype=torch.float64), torch.zeros(size, dtype=torch.float64)
        for group in range(self.groups.count):
            members, inputs = self.groups.members_of(group), self.groups.inputs_of(group)
            for start in range(0, len(inputs), CHUNK):
                x = inputs[start : start + CHUNK]
                logits, d = self._logits(x, members)
                scale[x], log_z[x] = d.double(), torch.logsumexp(logits, dim=1).double()
        return scale, log_z

    def sample(self, x: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        """The output for each occurrence of drawable token ``x[j]`` given its draw ``uniform[j]`` in
        (0, 1): the inverse of the cumulative P(. | x) over x's group, members in id order."""
        out = x.clone()
        groups = self.groups.input_of[x]
        for group in torch.unique(groups).tolist():
            at = torch.nonzero(groups == group).flatten()
            members = self.groups.members_of(group)
            distinct, which = torch.unique(x[at], return_inverse=True)
            for start in range(0, len(distinct), CHUNK):
                rows = distinct[start : start + CHUNK]
                logits, _ = self._logits(rows, members)
                cdf = torch.softmax(logits.double(), dim=1).cumsum(dim=1)
                cdf = cdf / cdf[:, -1:]
                # rows stacked on one increasing axis: row r's cumulative values lie in [r, r + 1]
                stacked = (cdf + torch.arange(len(rows), dtype=torch.float64)[:, None]).flatten()
                mine = (which >= start) & (which < start + len(rows))
                local = which[mine] - start
                position = torch.searchsorted(stacked, local.double() + uniform[at[mine]].double())
                column = (position - local * len(members)).clamp(0, len(members) - 1)
                out[at[mine]] = members[column]
        return out

    def log_likelihood(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log P(y[j] | x[j, c]) for candidate inputs ``x`` (n x c), -inf where x is not in y's group."""
        scale, log_z = self.normalisers
        distance = torch.empty(x.shape, dtype=torch.float64)
        for start in range(0, len(y), CHUNK):
            rows, inputs = self.embedding[y[start : start + CHUNK]], self.embedding[x[start : start + CHUNK]]
            distance[start : start + CHUNK] = torch.linalg.vector_norm(inputs - rows[:, None, :], dim=-1)
        distance = distance.masked_fill(x == y[:, None], 0.0)
        value = -self.epsilon_of[x] * distance / (2.0 * scale[x].clamp_min(1e-12)) - log_z[x]
        same = (self.groups.input_of[x] == self.groups.group_of[y][:, None]) & (
            self.groups.group_of[y][:, None] >= 0
        )
        return value.masked_fill(~same, -torch.inf)

    def likely_inputs(
        self, y: torch.Tensor, log_prior: torch.Tensor, m: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """For each output ``y[j]`` (a member of a group), the (at most) ``m`` inputs drawn in its group
        with the highest log P(y | x) + ``log_prior[x]``: (inputs n x m, log P(y | x) n x m), padded with
        y itself at -inf where a group has fewer inputs."""
        scale, log_z = self.normalisers
        width = (
            min(m, int(torch.bincount(self.groups.input_of[self.drawable]).max())) if self.groups.count else 1
        )
        inputs = y[:, None].repeat(1, width)
        likelihood = torch.full((len(y), width), -torch.inf, dtype=torch.float64)
        groups = self.groups.group_of[y]
        for group in torch.unique(groups).tolist():
            at = torch.nonzero(groups == group).flatten()
            candidates = self.groups.inputs_of(group)
            take = min(width, len(candidates))
            for start in range(0, len(at), CHUNK):
                rows = at[start : start + CHUNK]
                distance = self._distances(y[rows], candidates)  # symmetric: read per input x, its D(x)
                factor = (-self.epsilon_of[candidates] / (2.0 * scale[candidates].clamp_min(1e-12))).float()
                value = distance.mul_(factor).sub_(log_z[candidates].float())
                best = torch.topk(value + log_prior[candidates].float(), take, dim=1).indices
                inputs[rows, :take] = candidates[best]
                likelihood[rows, :take] = value.gather(1, best).double()
        return inputs, likelihood


def occurrence_windows(
    sequences: Sequence[Sequence[int]], width: int = WINDOW
) -> tuple[np.ndarray, np.ndarray]:
    """The flat ids of ``sequences`` and, per occurrence, the ids ``width`` either side (-1 beyond the
    sequence), as an int32 array of shape (occurrences, 2 width + 1)."""
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    flat = np.fromiter((i for s in sequences for i in s), dtype=np.int64, count=int(lengths.sum()))
    start = np.repeat(np.cumsum(lengths) - lengths, lengths)
    end = start + np.repeat(lengths, lengths)
    position = np.arange(len(flat))
    windows = np.full((len(flat), 2 * width + 1), -1, dtype=np.int32)
    for offset in range(-width, width + 1):
        where = position + offset
        inside = (where >= start) & (where < end)
        windows[inside, offset + width] = flat[where[inside]]
    return flat, windows


def keyed_uniforms(windows: np.ndarray, prf_key: bytes) -> torch.Tensor:
    """One draw in (0, 1) per window row: BLAKE2b keyed with ``prf_key`` over the row's int32 ids, 53 bits
    of it as a float64."""
    rows = np.ascontiguousarray(windows, dtype="<i4")
    draws = np.empty(len(rows), dtype=np.uint64)
    for index, row in enumerate(rows):
        digest = hashlib.blake2b(row.tobytes(), key=prf_key, digest_size=8).digest()
        draws[index] = int.from_bytes(digest, "little")
    return torch.from_numpy(((draws >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53)


Draws = Callable[[np.ndarray], torch.Tensor]  # window rows -> one uniform per row


def substitute_sequences(
    mechanism: Mechanism, sequences: Sequence[Sequence[int]], draws: Draws
) -> list[list[int]]:
    """Every substitutable occurrence of ``sequences`` replaced by its mechanism's draw (``draws`` gives
    each occurrence's uniform from its window); lengths and every other id unchanged."""
    flat, windows = occurrence_windows(sequences)
    ids = torch.from_numpy(flat)
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= len(mechanism.substitutable)):
        raise SettingsError(f"token ids must lie in [0, {len(mechanism.substitutable)}) for this key")
    chosen = torch.nonzero(mechanism.chosen(ids, positions(sequences))).flatten()
    if len(chosen):
        ids = ids.clone()
        ids[chosen] = mechanism.sample(ids[chosen], draws(windows[chosen.numpy()]))
    pieces = ids.split([len(s) for s in sequences])
    return [piece.tolist() for piece in pieces]


def positions(sequences: Sequence[Sequence[int]]) -> torch.Tensor:
    """Each occurrence's index within its sequence, flattened."""
    return torch.as_tensor([p for seq in sequences for p in range(len(seq))], dtype=torch.long)


def substitute_padded(
    mechanism: Mechanism, ids: torch.Tensor, lengths: Sequence[int], draws: Draws
) -> torch.Tensor:
    """The same for a padded batch (one row per sequence, its first ``lengths[r]`` ids real): the
    padding is left as it is and never keys a draw, so a query is substituted as it was uploaded."""
    rows = [ids[r, : int(n)].tolist() for r, n in enumerate(lengths)]
    out = ids.clone()
    for r, row in enumerate(substitute_sequences(mechanism, rows, draws)):
        out[r, : len(row)] = torch.as_tensor(row, dtype=ids.dtype)
    return out
