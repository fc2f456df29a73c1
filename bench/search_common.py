"""What the search benchmarks share: the bench space and fidelity, the SST-2 task, and the space-filling
design (scrambled Sobol points mapped onto the search space's parameters)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from scipy.stats import qmc

from adaptive.space import DIMENSION_RANGE, INTENSITY_RANGES, SearchSpace
from objectives.task import DataSource, TaskSpec
from objectives.trial import Fidelity, TrialSettings

SPACE = SearchSpace(steps=(20, 40, 80), learning_rates=(1e-4, 3e-4), batch_size=16, recovery_steps=(0,))
FIDELITY = Fidelity(train_size=640, max_length=32)
DESIGN = Path(__file__).parent / "data" / "search-design.jsonl"
# the real-run check's log, kept in the repository across sessions (figures only, no data)
REAL_LOG = Path(__file__).parent / "data" / "search-real-runs.jsonl"


def sst2_task(root: Path) -> TaskSpec:
    """SST-2 at the bench slices: training rows, 300 dev rows to score, the other dev rows as public text."""
    return TaskSpec(
        DataSource(str(root / "train.tsv")),
        DataSource(str(root / "dev.tsv"), 0, 300),
        DataSource(str(root / "dev.tsv"), 1000, None),
    )


def default_sst2() -> Path:
    return Path(os.environ.get("SHAKETUNE_SST2", "../shared/data/sst2"))


def _pick(choices: tuple, u: float) -> Any:
    return choices[min(int(u * len(choices)), len(choices) - 1)]


def params_of_unit(u: np.ndarray, space: SearchSpace = SPACE) -> dict[str, Any]:
    """One point of the unit cube as the space's parameters (switched-off operators get none)."""
    values = iter(u)
    params: dict[str, Any] = {
        "coverage": space.coverage[0] + next(values) * (space.coverage[1] - space.coverage[0])
    }
    for op in space.operators:
        use, intensity, dimension = next(values), next(values), next(values)
        params[f"use_{op}"] = bool(use >= 0.5)
        if params[f"use_{op}"]:
            low, high = INTENSITY_RANGES[op]
            params[f"{op}.intensity"] = low + intensity * (high - low)
            params[f"{op}.dimension"] = DIMENSION_RANGE[0] + dimension * (
                DIMENSION_RANGE[1] - DIMENSION_RANGE[0]
            )
    share, noise = next(values), next(values)
    params["homophones.max_share"] = _pick(space.max_shares, share)
    if params["homophones.max_share"] < 1.0:
        params["homophones.copy_noise"] = space.copy_noise[0] + noise * (
            space.copy_noise[1] - space.copy_noise[0]
        )
    params["recovery.steps"] = 0
    params["tuning.steps"] = _pick(space.steps, next(values))
    params["tuning.learning_rate"] = _pick(space.learning_rates, next(values))
    params["tuning.mode"] = _pick(space.modes, next(values))
    return params


def unit_dimensions(space: SearchSpace = SPACE) -> int:
    return 1 + 3 * len(space.operators) + 2 + 3


def design_points(count: int, seed: int, space: SearchSpace = SPACE) -> list[dict[str, Any]]:
    """``count`` space-filling settings (a scrambled Sobol sequence; ``seed`` picks the scramble)."""
    sampler = qmc.Sobol(unit_dimensions(space), scramble=True, seed=seed)
    return [params_of_unit(u, space) for u in sampler.random(count)]


def settings_of(params: dict[str, Any], space: SearchSpace = SPACE) -> TrialSettings:
    return space.suggest(optuna.trial.FixedTrial(params))
