"""Nearest neighbour: each shaken row is taken for the closest public pretrained row.

Two variants, since neither dominates: in the centred space (optimal for isotropic noise, immune to
``addv``) and with every column standardised (immune to ``inflate``, but it amplifies noise in the
embedding's low-variance dimensions). A third, ``posterior``, weighs the row distance against frequency
evidence, which matters where noise leaves several public rows about equally close.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from objectives.attacks.context import AttackContext, Guess, Space
from objectives.attacks.frequency import count_model
from objectives.attacks.matching import CHUNK


class NearestNeighbourAttack:
    """Match shaken rows to public rows by Euclidean distance in one space."""

    def __init__(self, space: str = "centred") -> None:
        self.space = space
        self.name = "nearest" if space == "centred" else f"nearest_{space}"

    def guess(self, context: AttackContext) -> Guess:
        return Guess(context.guess_from(context.space(self.space)))


def noise_variance(space: Space) -> float:
    """Per-dimension variance of the noise on the shaken rows, estimated without the key: what the shaken
    rows vary more than the public ones (rotations keep the total; a small floor keeps it positive)."""
    excess = float(space.shaken.var(dim=0).sum() - space.public.var(dim=0).sum()) / space.shaken.shape[1]
    return max(excess, 1e-4 * float(space.public.var(dim=0).mean()))


def posterior_blocks(context: AttackContext) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """For chunks of the observed shaken ids: (ids, log posterior per candidate up to a constant), the
    gaussian likelihood of each row around each public row (noise estimated from the rows) plus the
    Poisson likelihood of its count under each token's public frequency. Columns follow
    ``context.candidates``; the scores live on ``context.device``."""
    space = context.space("centred")
    noise = noise_variance(space)
    candidates, where = context.candidates, context.device
    public = space.public[candidates].to(where)
    bias = -(public * public).sum(dim=1) / (2 * noise)
    model = count_model(context)
    observed = context.observed
    for start in range(0, len(observed), CHUNK):
        ids = observed[start : start + CHUNK]
        score = space.shaken[ids].to(where) @ public.T
        evidence = model.log_likelihood(context.counts[ids], candidates).to(where)
        yield ids, score.div_(noise).add_(bias).add_(evidence)


SHORTLIST = 20  # tokens kept per observed id by :func:`posterior_shortlists`


def posterior_shortlists(context: AttackContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Observed ids, each one's :data:`SHORTLIST` most probable tokens by the posterior (best first) and
    their scores: computed once per view for every attack that starts from the posterior."""

    def compute() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        take = min(SHORTLIST, len(context.candidates))
        ids, tokens, scores = [], [], []
        for block, score in posterior_blocks(context):
            best, where = torch.topk(score, take, dim=1)
            ids.append(block)
            tokens.append(context.candidates[where.cpu()])
            scores.append(best.cpu().double())
        if not ids:
            empty = torch.empty(0, dtype=torch.long)
            return empty, empty.reshape(0, take), torch.empty(0, take, dtype=torch.float64)
        return torch.cat(ids), torch.cat(tokens), torch.cat(scores)

    return context.cached("posterior/shortlists", compute)


class PosteriorAttack:
    """The most probable token for each shaken row: gaussian likelihood of the row around each public row
    (noise estimated from the rows) times the Poisson likelihood of the id's count under the token's
    public frequency. Where noise makes rows ambiguous, frequency breaks the tie."""

    name = "posterior"

    def guess(self, context: AttackContext) -> Guess:
        guess = torch.full((context.view.vocab_size,), -1, dtype=torch.long)
        ids, tokens, _ = posterior_shortlists(context)
        guess[ids] = tokens[:, 0]
        noise = noise_variance(context.space("centred"))
        return Guess(guess, f"noise {noise**0.5:.3g} per dimension")
