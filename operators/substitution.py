"""Per-occurrence substitution: before the permutation, each occurrence of a token is replaced by a token
drawn from its candidate group with the exponential mechanism (metric local DP text sanitisation, as in
SanText, ACL Findings 2021, and CusText, ACL Findings 2023).

Groups. Every token that may be substituted belongs to exactly one candidate group, and groups are
disjoint, so an output reveals its group (the candidate set is public). A group never mixes word starts
with word continuations (a piece stays a piece, so token counts never change) nor numbers with other
tokens. ``vocabulary``: one group per kind of token (SanText over the whole vocabulary of that kind);
``clusters``: disjoint clusters of k nearest tokens within a kind (CusText).

Mechanism. P(y | x) = exp(eps u(x, y) / 2) / Z(x) over the y of x's group, u(x, y) = -d(x, y) / D(x), d the
Euclidean distance between the public pretrained input-embedding rows and D(x) the largest distance from x
within its group. As u lies in [-1, 0] for every pair, for any two tokens x, x' of one group and any output
y, P(y | x) <= exp(eps) P(y | x'): eps-local differential privacy per occurrence among the members of a
group, and none between groups. It bounds what one occurrence tells an attacker beyond its prior; it
does not stop a frequent token being guessed from its context.

Who passes unchanged: special tokens, tokens the tokenizer never produces from text (bracketed, such as
``[unused5]`` or ``<0x0A>``), and the ``keep_top`` most frequent public tokens unless a class substituted
whatever its frequency holds them (``numbers``: a digit anywhere; ``pieces``: word continuations). With
the class ``words``, a word (a word start and the continuations after it) is substituted whole when any
of its tokens is: a rare name or e-mail address loses its frequent pieces too, a frequent word split in
pieces stays whole. A kept token substituted so is drawn in the group of its nearest substitutable token
of its kind. Nothing is ever replaced by a kept token: kept tokens are never outputs.

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


@dataclass(frozen=True, eq=False)
class TokenClasses:
    """What each vocabulary id is, from its token string alone."""

    continuation: torch.Tensor  # bool: continues a word (WordPiece ``##x``; a BPE token without a space)
    numeric: torch.Tensor  # bool: holds a digit
    unproducible: torch.Tensor  # bool: bracketed tokens the tokenizer never produces from text

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
    return TokenClasses(torch.tensor(continuation), torch.tensor(numeric), torch.tensor(unproducible))


@dataclass(frozen=True, eq=False)
class Groups:
    """Disjoint candidate groups: ``group_of[i]`` (-1: passes unchanged), members of group g in
    ``members[offsets[g] : offsets[g + 1]]`` (ascending ids), the only possible outputs. ``input_of[i]``
    is the group token i is drawn in when it is substituted: its own, or for a kept token (substituted
    only with its word) the group of its nearest member of its kind; -1 for tokens never substituted."""

    group_of: torch.Tensor
    offsets: torch.Tensor
    members: torch.Tensor
    input_of: torch.Tensor

    @property
    def count(self) -> int:
        return int(self.offsets.numel()) - 1

    def members_of(self, group: int) -> torch.Tensor:
        return self.members[int(self.offsets[group]) : int(self.offsets[group + 1])]

    @property
    def substitutable(self) -> torch.Tensor:
        return self.group_of >= 0

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
) -> Groups:
    """One group per kind of token (``vocabulary``) or disjoint clusters of ``settings.k`` nearest tokens
    within each kind (``clusters``); ``kept`` tokens (substituted only with their word) are attached to
    the group of their nearest member."""
    kept = torch.zeros_like(substitutable) if kept is None else kept
    kinds = classes.kind
    parts: list[torch.Tensor] = []
    for kind in range(len(KIND_NAMES)):
        ids = torch.nonzero(substitutable & (kinds == kind)).flatten()
        if not len(ids):
            continue
        if settings.candidates == "vocabulary" or len(ids) <= settings.k:
            parts.append(ids)
        else:
            parts.extend(ids[local] for local in greedy_clusters(embedding[ids].float(), settings.k))
    group_of = torch.full((len(substitutable),), -1, dtype=torch.long)
    for index, ids in enumerate(parts):
        group_of[ids] = index
    sizes = torch.tensor([len(ids) for ids in parts], dtype=torch.long)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(sizes, 0)])
    members = torch.cat([ids.sort().values for ids in parts]) if parts else torch.zeros(0, dtype=torch.long)
    return Groups(group_of, offsets, members, attach_kept(embedding, kinds, substitutable, kept, group_of))


def attach_kept(
    embedding: torch.Tensor,
    kinds: torch.Tensor,
    substitutable: torch.Tensor,
    kept: torch.Tensor,
    group_of: torch.Tensor,
) -> torch.Tensor:
    """``Groups.input_of``: members in their own group, each ``kept`` token (substituted only with its
    word) in the group of its nearest substitutable token of its kind."""
    input_of = group_of.clone()
    rows = embedding.float()
    for kind in range(len(KIND_NAMES)):
        targets = torch.nonzero(substitutable & (kinds == kind)).flatten()
        attached = torch.nonzero(kept & (kinds == kind)).flatten()
        for start in range(0, len(attached) if len(targets) else 0, CHUNK):
            ids = attached[start : start + CHUNK]
            nearest = torch.cdist(rows[ids], rows[targets]).argmin(dim=1)
            input_of[ids] = group_of[targets[nearest]]
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
        self.groups = groups
        size = len(groups.group_of)
        self.continuation = torch.zeros(size, dtype=torch.bool) if continuation is None else continuation
        self.whole_words = "words" in settings.classes

    def __repr__(self) -> str:
        return f"Mechanism(epsilon={self.epsilon:g}, groups={self.groups.count})"

    @property
    def substitutable(self) -> torch.Tensor:
        """Ids substituted by themselves: the possible outputs."""
        return self.groups.substitutable

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
        return -self.epsilon * distance / (2.0 * scale.clamp_min(1e-12)[:, None]), scale

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
        value = -self.epsilon * distance / (2.0 * scale[x].clamp_min(1e-12)) - log_z[x]
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
                factor = (-self.epsilon / (2.0 * scale[candidates].clamp_min(1e-12))).float()
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
