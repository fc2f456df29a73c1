"""Samplers the search can use; all seeded, all aware of the constraints set by each trial.

The default is multivariate TPE with ``group=True``: the space is conditional (an operator's intensity
and dimension exist only when the operator is switched on), and grouped TPE models each set of
parameters that occur together jointly instead of falling back to independent sampling; it handles
three objectives and constraints, and ``constant_liar`` keeps parallel workers from sampling the same
point. NSGA-II and the Gaussian-process samplers work too: ``gp`` (Optuna's, log expected hypervolume
improvement) and ``botorch`` (BoTorch through optuna-integration: noisy expected hypervolume improvement,
qNEHVI); both read the caps as the constraints each trial sets. A GP models only parameters every
trial has, so for them the space suggests every operator's intensity and dimension whether it is on or
not (:func:`flat_space`).
Random search is the baseline the benchmark compares with; ``bench/bench_search.py`` chose the default.
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
    if name == "botorch":
        # imports the torch-heavy BoTorch only when chosen
        from optuna_integration.botorch import BoTorchSampler, qnehvi_candidates_func

        # the sampler and its qNEHVI are marked experimental; the latter warns at every suggestion
        warnings.filterwarnings(
            "ignore", ".*qnehvi_candidates_func is experimental", optuna.exceptions.ExperimentalWarning
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return BoTorchSampler(
                candidates_func=qnehvi_candidates_func, seed=seed, n_startup_trials=STARTUP_TRIALS
            )
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise SettingsError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")


SAMPLERS = ("tpe", "nsga2", "gp", "botorch", "random")
FLAT = ("gp", "botorch")


def flat_space(sampler: optuna.samplers.BaseSampler) -> bool:
    """Whether ``sampler`` needs every parameter in every trial (a GP over a fixed set of dimensions)."""
    return isinstance(sampler, optuna.samplers.GPSampler) or type(sampler).__name__ == "BoTorchSampler"
