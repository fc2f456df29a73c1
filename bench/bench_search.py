"""Benchmark: search efficiency of the default sampler against random search, and leakage-first stopping.

1. On one fixed low-fidelity objective (SST-2, 200 private sentences, 10-40 tuning steps of batch 8),
   run N trials with the default sampler (multivariate grouped TPE) and with random search, for several
   seeds, and compare the hypervolume of the measured points. Objectives are scaled to [0, 1] so that
   1 is worst: 1 - accuracy, cost / (the cost of the most expensive setting in the space with batch
   order seed 0), leakage; the reference point is (1, 1, 1) and a point beyond it adds nothing.
   Target: default >= 1.2x random at equal trials.
2. A study with --max-leakage 0.1: the share of the tuning and inference compute that stopping after the
   attacks saved (deterministic FLOPs, and seconds estimated from the measured trials' rate).
   Target: >= 30%.

    .venv/bin/python bench/bench_search.py [--trials 30] [--seeds 3] [--sst2 ../shared/data/sst2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import optuna  # noqa: E402
from optuna._hypervolume import compute_hypervolume  # noqa: E402

from adaptive.samplers import DEFAULT_SAMPLER  # noqa: E402
from adaptive.space import SearchSpace  # noqa: E402
from adaptive.study import Caps, StudyConfig, is_measured, objective, objectives_of, open_study  # noqa: E402
from objectives.models import DEFAULT_MODEL  # noqa: E402
from objectives.task import DataSource, TaskSpec  # noqa: E402
from objectives.trial import Fidelity, MemoryReferences, TrialRunner, TrialSettings  # noqa: E402
from objectives.tuning import TuningBudget  # noqa: E402
from operators.settings import ShakeSettings  # noqa: E402

SPACE = SearchSpace(steps=(10, 20, 40), learning_rates=(1e-4, 3e-4), batch_size=8, recovery_steps=(0,))
FIDELITY = Fidelity(train_size=200, max_length=32)


def hypervolume(study: optuna.Study, worst_cost: float) -> float:
    points = [objectives_of(t) for t in study.trials if is_measured(t)]
    if not points:
        return 0.0
    scaled = np.array([(1 - a, c / worst_cost, leak) for a, c, leak in points])
    return float(compute_hypervolume(np.minimum(scaled, 1.0), np.ones(3)))  # beyond the box: adds nothing


def run_study(
    config: StudyConfig, runner: TrialRunner, sampler: str, trials: int
) -> tuple[optuna.Study, float]:
    study = open_study(f"{sampler}-{config.seed}", optuna.storages.InMemoryStorage(), config, sampler)
    started = time.perf_counter()
    study.optimize(objective(config, runner), n_trials=trials, gc_after_trial=True)
    return study, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--sst2", type=Path, default=Path(os.environ.get("SHAKETUNE_SST2", "../shared/data/sst2"))
    )
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    task = TaskSpec(
        DataSource(str(args.sst2 / "train.tsv")),
        DataSource(str(args.sst2 / "dev.tsv"), 0, 300),
        DataSource(str(args.sst2 / "dev.tsv"), 1000, None),
    )
    runner = TrialRunner(task, DEFAULT_MODEL, FIDELITY, MemoryReferences())
    priciest = TrialSettings(ShakeSettings(), TuningBudget(max(SPACE.steps), SPACE.batch_size, 1e-4, "full"))
    worst_cost = sum(runner.flops(priciest, 0).values()) / 1e9
    print(
        f"1. hypervolume after {args.trials} trials; reference point "
        f"(accuracy 0, cost {worst_cost:.0f} GFLOP, leakage 1)"
    )
    print(
        f"   {'seed':>4s} {DEFAULT_SAMPLER + ' (default)':>16s} {'random':>10s} {'ratio':>7s}"
        "   minutes (default, random)"
    )
    ratios, measured_before = [], []
    for seed in range(args.seeds):
        config = StudyConfig(DEFAULT_MODEL, task, FIDELITY, SPACE, Caps(), "bench", seed)
        default, t_default = run_study(config, runner, DEFAULT_SAMPLER, args.trials)
        baseline, t_random = run_study(config, runner, "random", args.trials)
        hv_default, hv_random = hypervolume(default, worst_cost), hypervolume(baseline, worst_cost)
        measured_before += [t for t in default.trials + baseline.trials if is_measured(t)]
        ratios.append(hv_default / hv_random if hv_random else float("inf"))
        print(
            f"   {seed:4d} {hv_default:16.4f} {hv_random:10.4f} {ratios[-1]:7.2f}   "
            f"({t_default / 60:.1f}, {t_random / 60:.1f})",
            flush=True,
        )
    mean = statistics.mean(ratios)
    verdict = "meets" if mean >= 1.2 else "MISSES"
    print(f"   mean ratio {mean:.2f} (min {min(ratios):.2f}); target >= 1.2: {verdict}")

    print("\n2. leakage-first stopping in a study with --max-leakage 0.1")
    config = StudyConfig(DEFAULT_MODEL, task, FIDELITY, SPACE, Caps(max_leakage=0.1), "bench", 100)
    study, wall = run_study(config, runner, DEFAULT_SAMPLER, args.trials)
    trials = [t for t in study.trials if t.values is not None]
    stopped = [t for t in trials if t.user_attrs.get("stopped_early")]
    measured = [t for t in trials if not t.user_attrs.get("stopped_early")]

    def later_flops(t: optuna.trial.FrozenTrial) -> float:
        return t.user_attrs["flops"]["tuning"] + t.user_attrs["flops"]["inference"]

    saved_flops = sum(later_flops(t) for t in stopped)
    share = saved_flops / sum(later_flops(t) for t in trials)
    print(f"   {len(trials)} trials, {len(stopped)} stopped after the attacks, {len(measured)} trained")
    print(
        f"   tuning + inference FLOPs not spent: {share:.1%} of what the study would have spent "
        "without stopping"
    )
    reference = measured + measured_before  # seconds per FLOP of tuning and inference, as measured
    seconds = sum(t.user_attrs["seconds"][s]["wall"] for t in reference for s in ("tuning", "inference"))
    saved_s = saved_flops * seconds / sum(later_flops(t) for t in reference)
    print(f"   estimated seconds saved: {saved_s:.0f} s; the study took {wall:.0f} s, so stopping saved")
    print(f"   {saved_s / (saved_s + wall):.1%} of the wall time it would have taken")
    verdict = "meets" if share >= 0.3 else "MISSES"
    print(f"   target >= 30%: {verdict}")


if __name__ == "__main__":
    main()
