"""Samplers the search can use; all seeded, all aware of the constraints set by each trial.

The default is multivariate TPE with ``group=True``: the space is conditional (an operator's intensity
and dimension exist only when the operator is switched on), and grouped TPE models each set of
parameters that occur together jointly instead of falling back to independent sampling; it handles
three objectives and constraints, and ``constant_liar`` keeps parallel workers from sampling the same
point. NSGA-II and GP work too but treat conditional parameters less well (GP samples parameters
outside the common subspace at random); random search is the baseline the benchmark compares with.
"""

from __future__ import annotations

import warnings

import optuna

from operators.errors import SettingsError

DEFAULT_SAMPLER = "tpe"
STARTUP_TRIALS = 8  # random trials before a model-based sampler starts modelling


def make_sampler(name: str, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """A fresh sampler by name: ``tpe`` (default), ``nsga2``, ``gp`` or ``random``."""
    if name == "tpe":
        with warnings.catch_warnings():  # multivariate, group and constant_liar are marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(
                seed=seed, multivariate=True, group=True, constant_liar=True, n_startup_trials=STARTUP_TRIALS
            )
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=16)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=STARTUP_TRIALS)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise SettingsError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")


SAMPLERS = ("tpe", "nsga2", "gp", "random")
