"""Benchmark: the leakage floor of 1:1 shaking, and homophonic (frequency-flattening) shaking below it.

For a 1:1 permutation and for homophonic levels (max_share: the largest share of public text one shaken
id may carry), a search finds the best vertical setting for that level: Optuna over tilt, inflate,
gaussian and copy noise, with a leakage cap (trials over it stop after the attacks) and a fixed tuning
budget, on a small slice (1,000 private sentences, dev[0:500]). The best found (the most accurate within
the cap, else the least leaky) is then measured at the default fidelity on SST-2 test: accuracy after
private tuning, the gap to plaintext tuning at the same budget, the recovered model's plaintext accuracy
(copies merged by their mean) against private inference, leakage under every attack, and cost.
Target: a setting with a leakage bound < 5% and an accuracy gap <= 1 point; when the best
misses, the table says by how much and which attack holds it back.

    .venv/bin/python bench/bench_homophonic.py [--trials 6] [--levels 1,0.002,0.001,0.0005]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import optuna  # noqa: E402

from adaptive.samplers import DEFAULT_SAMPLER  # noqa: E402
from adaptive.space import SearchSpace  # noqa: E402
from adaptive.study import Caps, StudyConfig, objective, open_study, trial_settings  # noqa: E402
from adaptive.trials import is_measured, objectives_of  # noqa: E402
from objectives.models import DEFAULT_MODEL  # noqa: E402
from objectives.recovery_training import RecoveryBudget  # noqa: E402
from objectives.task import DataSource, TaskSpec  # noqa: E402
from objectives.trial import Fidelity, MemoryReferences, TrialResult, TrialRunner, TrialSettings  # noqa: E402
from objectives.tuning import TuningBudget  # noqa: E402
from operators.settings import HomophoneSettings, OperatorSettings, ShakeSettings  # noqa: E402

TARGET_LEAKAGE = 0.05
TARGET_GAP = 0.01
BUDGET = TuningBudget(steps=150, batch_size=16, learning_rate=1e-4, mode="full")
SEARCH_FIDELITY = Fidelity(train_size=1000, max_length=64)
FINAL_FIDELITY = Fidelity(check_recovered=True, compare_recovery=False)


def space_for(level: float) -> SearchSpace:
    return SearchSpace(
        coverage=(1.0, 1.0),
        operators=("tilt", "inflate", "gaussian"),
        steps=(BUDGET.steps,),
        learning_rates=(BUDGET.learning_rate,),
        modes=(BUDGET.mode,),
        batch_size=BUDGET.batch_size,
        recovery_steps=(0,),
        max_shares=(level,),
    )


def starting_points(level: float, copy_noise: float = 1.0) -> list[TrialSettings]:
    """Enqueued first: full tilt with noise at and above where the embedding attacks are known to fail."""
    homophones = HomophoneSettings(level, copy_noise) if level < 1.0 else HomophoneSettings()
    chains = [(OperatorSettings("tilt", 1.5, 1.0), OperatorSettings("gaussian", g, 1.0)) for g in (1.5, 2.0)]
    return [TrialSettings(ShakeSettings(1.0, chain, homophones), BUDGET) for chain in chains]


def search(
    level: float, task: TaskSpec, trials: int, references: MemoryReferences, copy_noise: float = 1.0
) -> TrialSettings:
    """The best vertical setting the search finds for this level (most accurate under the cap)."""
    space = space_for(level)
    caps = Caps(max_leakage=TARGET_LEAKAGE)
    config = StudyConfig(DEFAULT_MODEL, task, SEARCH_FIDELITY, space, caps, "bench-homophonic", 0)
    study = open_study(f"level-{level}", optuna.storages.InMemoryStorage(), config, DEFAULT_SAMPLER)
    for settings in starting_points(level, copy_noise):
        study.enqueue_trial(space.params_of(settings))
    runner = TrialRunner(task, DEFAULT_MODEL, SEARCH_FIDELITY, references)
    study.optimize(objective(config, runner), n_trials=trials, gc_after_trial=True)
    done = [t for t in study.trials if t.values is not None]
    feasible = [t for t in done if is_measured(t) and objectives_of(t)[2] < TARGET_LEAKAGE]
    if feasible:
        best = max(feasible, key=lambda t: objectives_of(t)[0])
    else:
        best = min(done, key=lambda t: objectives_of(t)[2])  # the study measures the bound
    print(
        f"   search at max_share {level:g}: {len(done)} trials, {len(feasible)} under the cap; best "
        f"#{best.number}: {trial_settings(best).shaking.describe()}",
        flush=True,
    )
    return trial_settings(best)


def describe_attacks(result: TrialResult) -> str:
    ranked = sorted(result.attacks.items(), key=lambda item: -item[1])
    short = lambda name: name.replace("shaken/", "").replace("recovered/", "after recovery ")  # noqa: E731
    return ", ".join(f"{short(name)} {value:.3f}" for name, value in ranked[:4])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6, help="Search trials per level.")
    parser.add_argument(
        "--skip-search",
        action="store_true",
        help="Measure the first starting point (tilt 1.5, gaussian 1.5) of each level without searching.",
    )
    parser.add_argument("--copy-noise", type=float, default=1.0, help="Copy noise of the starting points.")
    parser.add_argument("--levels", default="1,0.002,0.001,0.0005", help="max_share levels (1: 1:1).")
    parser.add_argument(
        "--recovery-steps", type=int, default=0, help="Recovery training of the final measurement."
    )
    parser.add_argument(
        "--sst2", type=Path, default=Path(os.environ.get("SHAKETUNE_SST2", "../shared/data/sst2"))
    )
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    levels = [float(x) for x in args.levels.split(",")]
    search_task = TaskSpec(
        DataSource(str(args.sst2 / "train.tsv")),
        DataSource(str(args.sst2 / "dev.tsv"), 0, 500),
        DataSource(str(args.sst2 / "dev.tsv"), 500, None),
    )
    final_task = TaskSpec(
        DataSource(str(args.sst2 / "train.tsv")),
        DataSource(str(args.sst2 / "test.tsv")),
        DataSource(str(args.sst2 / "dev.tsv")),
    )
    references = MemoryReferences()
    final = TrialRunner(final_task, DEFAULT_MODEL, FINAL_FIDELITY, MemoryReferences())
    searched = "no search (--skip-search)" if args.skip_search else f"{args.trials} trials per level"
    print(f"1. search: {searched}, leakage cap {TARGET_LEAKAGE:.0%}, {BUDGET}")
    started = time.perf_counter()
    if args.skip_search:
        best = {level: starting_points(level, args.copy_noise)[0] for level in levels}
    else:
        best = {
            level: search(level, search_task, args.trials, references, args.copy_noise) for level in levels
        }
    print(f"   ({(time.perf_counter() - started) / 60:.1f} min)")

    recovery = RecoveryBudget(args.recovery_steps) if args.recovery_steps else RecoveryBudget()
    print(
        "\n2. the best of each level on SST-2 test (default fidelity: 2,000 private sentences), "
        f"recovery training {args.recovery_steps} steps"
    )
    header = (
        f"   {'max_share':>9s} {'rows+':>6s} {'acc':>6s} {'gap':>7s} {'recov.':>6s} {'r-p':>7s} "
        f"{'bound':>7s} {'suite':>7s} {'GFLOP':>7s} {'emb MB':>6s}  strongest attacks"
    )
    print(header)
    results: dict[float, TrialResult] = {}
    for level in levels:
        settings = TrialSettings(best[level].shaking, BUDGET, recovery)
        result = final.run(settings, key_seed=0, tuning_seed=0)
        results[level] = result
        rows = final.added_rows(settings.shaking)
        print(
            f"   {level:9g} {rows:6d} {result.accuracy:6.3f} {result.accuracy_gap:+7.3f} "
            f"{result.recovered_accuracy:6.3f} {result.recovered_accuracy - result.accuracy:+7.3f} "
            f"{result.leakage_bound:7.3f} {result.leakage_attacks:7.3f} {result.cost_gflops:7.0f} "
            f"{result.embedding_memory_mb:6.1f}  "
            f"{describe_attacks(result)}",
            flush=True,
        )
        print(f"   {'':9s} settings: {settings.shaking.describe()}")
    print(f"   plaintext accuracy at the same budget: {results[levels[0]].plaintext_accuracy:.3f}")
    print("   (gap: plaintext - private; r-p: recovered model on plaintext - private inference)")

    def fits(r: TrialResult) -> bool:
        return r.leakage_bound < TARGET_LEAKAGE and r.accuracy_gap <= TARGET_GAP

    winners = [level for level, r in results.items() if fits(r)]
    if winners:
        print(f"\n   target (bound < 5%, gap <= 1 point): MET by max_share {winners}")
        return
    closest = min(
        results,
        key=lambda lv: (
            max(results[lv].leakage_bound - TARGET_LEAKAGE, 0) + max(results[lv].accuracy_gap - TARGET_GAP, 0)
        ),
    )
    r = results[closest]
    print(
        f"\n   target (bound < 5%, gap <= 1 point): MISSED. Closest: max_share "
        f"{closest:g}, bound {r.leakage_bound:.3f} ({max(r.leakage_bound - TARGET_LEAKAGE, 0):+.3f} over, "
        f"held back by {r.strongest_bound_attack}), gap {r.accuracy_gap:+.3f} "
        f"({max(r.accuracy_gap - TARGET_GAP, 0):+.3f} over)"
    )


if __name__ == "__main__":
    main()
