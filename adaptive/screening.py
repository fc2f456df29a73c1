"""Decoupled evaluation: spend private tuning only on shakings that can reach the feasible front.

The three objectives cost very different amounts: cost (FLOPs) is known before anything runs, leakage
needs the attacks on the upload (which depends on the shaking and recovery training, not on the tuning
budget), accuracy needs the private tuning. A trial of the ``screened`` and ``halving`` strategies

1. reuses the leakage of its shaking when a trial of the study measured it before (the key seed depends on
   the study seed and the shaking alone, so it is the same upload), else attacks;
2. stops before tuning (``screened``) when a cap is broken, or when an already tuned feasible trial is at
   least as cheap and as private and more accurate than this setting's plaintext reference at the same
   budget (an optimistic guess at what private tuning could reach);
3. with ``halving``, pauses its tuning at a third of the steps and goes on only if successive halving
   promotes it: it ranks among the trials that reached that rung by non-dominated sorting of (rung
   accuracy, cost, leakage) in the top third (while fewer than three reached it, it goes on unless
   another dominates it).

Screened candidates are complete trials with ``stopped_early`` and a ``screened`` reason: the sampler
learns from them (accuracy counts as 0), the dashboard shows them, no front contains them, and a trial
budget counts only trials that tuned (:func:`adaptive.trials.tuned`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from adaptive.trials import measured_feasible
from objectives.leakage import StagedLeakage
from objectives.rungs import REDUCTION, Rungs, rung_steps
from objectives.trial import LEARNT_MARGIN
from operators.errors import SettingsError

PLAIN, SCREENED, HALVING = "plain", "screened", "halving"
STRATEGIES = (PLAIN, SCREENED, HALVING)
DEFAULT_STRATEGY = SCREENED  # chosen by bench/bench_search.py (docs/benchmarks.md#search)
SHAKING_ATTR = "shaking_key"  # what its leakage depends on (study.shaking_key)
RUNG_ATTR = "rung_accuracy"  # successive halving: [accuracy at the first rung, ...]
SCREENED_COST, SCREENED_LEAKAGE = "screen_cost", "screen_leakage"  # the objectives known before tuning
# screened candidates allowed per tuned trial of a run's budget before the run gives up on the caps
SCREEN_LIMIT = 3


def check_strategy(name: str) -> str:
    if name not in STRATEGIES:
        raise SettingsError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    return name


def known_leakage(study: optuna.Study, shaking: str) -> StagedLeakage | None:
    """The leakage a complete trial of ``study`` measured for the same shaking (same key), if any."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        attrs = trial.user_attrs
        if attrs.get(SHAKING_ATTR) == shaking and attrs.get("leakage_stages"):
            return StagedLeakage.from_dict(attrs["leakage_stages"])
    return None


def dominating_trial(
    study: optuna.Study, cost: float, leakage: float, optimistic_accuracy: Callable[[], float]
) -> FrozenTrial | None:
    """A tuned feasible trial at most as costly and as leaky as the candidate and more accurate than the
    candidate could plausibly get (``optimistic_accuracy()`` plus a point), or None. The optimistic
    guess (a plaintext reference, itself a tuning run) is asked for only when some trial could dominate."""
    cheaper = [t for t in measured_feasible(study) if t.values[1] <= cost and t.values[2] <= leakage]
    if not cheaper:
        return None
    ceiling = optimistic_accuracy() + LEARNT_MARGIN
    return next((t for t in cheaper if t.values[0] > ceiling), None)


def front_ranks(points: Sequence[Sequence[float]]) -> list[int]:
    """Non-dominated sorting (all objectives minimised): the front index of every point, 0 the best."""
    remaining, ranks, front = set(range(len(points))), [0] * len(points), 0

    def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
        return all(x <= y for x, y in zip(a, b, strict=True)) and any(
            x < y for x, y in zip(a, b, strict=True)
        )

    while remaining:
        current = {
            i for i in remaining if not any(dominates(points[j], points[i]) for j in remaining if j != i)
        }
        for i in current:
            ranks[i] = front
        remaining -= current
        front += 1
    return ranks


def crowding(points: Sequence[Sequence[float]]) -> list[float]:
    """NSGA-II's crowding distance within one front: the points at either end of an objective get
    infinity, the others the normalised gap between their neighbours, summed over the objectives."""
    distance = [0.0] * len(points)
    for m in range(len(points[0]) if points else 0):
        order = sorted(range(len(points)), key=lambda i: points[i][m])
        low, high = points[order[0]][m], points[order[-1]][m]
        distance[order[0]] = distance[order[-1]] = float("inf")
        for before, i, after in zip(order, order[1:], order[2:], strict=False):
            if high > low:
                distance[i] += (points[after][m] - points[before][m]) / (high - low)
    return distance


def promoted(me: int, competitors: dict[int, tuple[float, float, float]], reduction: int = REDUCTION) -> bool:
    """Successive halving on non-dominated sorting: ``competitors`` maps trial numbers (``me`` among them)
    to (rung accuracy, cost, leakage); the top ``n // reduction`` by (front, larger crowding distance,
    higher accuracy, earlier trial) go on, as NSGA-II ranks a population. While fewer than ``reduction``
    trials reached the rung there is nothing to halve yet: a trial goes on unless another dominates it."""
    numbers = sorted(competitors)
    points = [(-competitors[n][0], competitors[n][1], competitors[n][2]) for n in numbers]
    ranks = dict(zip(numbers, front_ranks(points), strict=True))
    if len(numbers) < reduction:
        return ranks[me] == 0
    spread: dict[int, float] = {}
    for front in set(ranks.values()):
        members = [n for n in numbers if ranks[n] == front]
        spread.update(zip(members, crowding([points[numbers.index(n)] for n in members]), strict=True))
    order = sorted(numbers, key=lambda n: (ranks[n], -spread[n], -competitors[n][0], n))
    return me in order[: len(numbers) // reduction]


def halving_rungs(
    study: optuna.Study, trial: optuna.Trial, steps: int, cost: float, leakage: Callable[[], float]
) -> Rungs:
    """The rungs of a ``halving`` trial: at each, its accuracy is recorded on the trial (so other workers
    see it) and it goes on if :func:`promoted` among the study's trials that reached the same rung.
    ``leakage()`` gives the trial's leakage objective, known once the attacks ran (before tuning)."""
    points = rung_steps(steps)

    def promote(done: int, accuracy: float) -> bool:
        index = points.index(done)
        if index == 0:
            trial.set_user_attr(SCREENED_COST, cost)
            trial.set_user_attr(SCREENED_LEAKAGE, leakage())
        trial.set_user_attr(RUNG_ATTR, [*trial.user_attrs.get(RUNG_ATTR, [])[:index], accuracy])
        competitors = {trial.number: (accuracy, cost, leakage())}
        for other in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
            attrs = other.user_attrs
            rung = attrs.get(RUNG_ATTR, [])
            if other.number != trial.number and len(rung) > index and SCREENED_COST in attrs:
                competitors[other.number] = (rung[index], attrs[SCREENED_COST], attrs[SCREENED_LEAKAGE])
        go_on = promoted(trial.number, competitors)
        trial.set_user_attr("promoted", [*trial.user_attrs.get("promoted", [])[:index], go_on])
        return go_on

    return Rungs(points, promote)
