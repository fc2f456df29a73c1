"""Benchmark: recovery training on public text before private tuning, on SST-2 with the default model.

For three vertical settings (the presets light, medium, tilt-inflate-noise) and one key each: accuracy on
SST-2 test after private tuning (default fidelity: 2,000 private sentences, 150 steps of batch 16) with
0, N and 4N recovery-training steps on public text (dev.tsv, disjoint from train and test), the gap to
plaintext tuning at the same budget, leakage (the maximum over the model before recovery training and
after it) and cost. Target: recovery training halves the accuracy gap at medium and tilt-inflate-noise
without raising leakage by more than 2 points; the verdict is printed either way.

    .venv/bin/python bench/bench_recovery.py [--sst2 ../shared/data/sst2] [--steps 150] [--part all]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from objectives.models import DEFAULT_MODEL  # noqa: E402
from objectives.recovery_training import RECOVERY_OBJECTIVES, RECOVERY_PARTS, RecoveryBudget  # noqa: E402
from objectives.task import DataSource, TaskSpec  # noqa: E402
from objectives.trial import Fidelity, TrialResult, TrialRunner, TrialSettings  # noqa: E402
from objectives.tuning import TuningBudget  # noqa: E402
from operators.settings import preset  # noqa: E402

SETTINGS = ("light", "medium", "tilt-inflate-noise")
JUDGED = ("medium", "tilt-inflate-noise")
MAX_LEAKAGE_RISE = 0.02


def measure(runner: TrialRunner, name: str, recovery: RecoveryBudget) -> TrialResult:
    settings = TrialSettings(preset(name), TuningBudget(), recovery)
    return runner.run(settings, key_seed=0, tuning_seed=0)  # the same key and tuning noise in every row


def row(name: str, steps: int, result: TrialResult, baseline: TrialResult) -> str:
    gap, base_gap = result.accuracy_gap, baseline.accuracy_gap
    ratio = f"{gap / base_gap:6.2f}" if steps and base_gap > 0 else "      "
    recovered = result.attacks.get(f"recovered/{result.strongest_attack.split('/')[-1]}")
    bound, base_bound = result.leakage_bound, baseline.leakage_bound
    after = f"{recovered:6.3f}" if recovered is not None else "     -"
    recovery_gflop = result.flops["recovery"] / 1e9
    loss = (
        f"{result.recovery.heldout_loss_before:5.2f}->{result.recovery.heldout_loss_after:5.2f}"
        if result.recovery
        else ""
    )
    return (
        f"   {name:18s} {steps:6d} {result.accuracy:6.3f} {gap:+6.3f} {ratio} {result.leakage_attacks:6.3f} "
        f"{result.leakage_attacks - baseline.leakage_attacks:+6.3f} {after} {bound:6.3f} "
        f"{bound - base_bound:+6.3f} {result.strongest_attack:28s} "
        f"{result.cost_gflops:7.0f} {recovery_gflop:7.0f} {loss}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sst2", type=Path, default=Path(os.environ.get("SHAKETUNE_SST2", "../shared/data/sst2"))
    )
    parser.add_argument("--steps", type=int, default=150, help="N: recovery steps of the middle column")
    parser.add_argument("--part", choices=RECOVERY_PARTS, default="all")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--objective", choices=RECOVERY_OBJECTIVES, default="distill")
    args = parser.parse_args()
    task = TaskSpec(
        DataSource(str(args.sst2 / "train.tsv")),
        DataSource(str(args.sst2 / "test.tsv")),
        DataSource(str(args.sst2 / "dev.tsv")),
    )
    runner = TrialRunner(task, DEFAULT_MODEL, Fidelity(compare_recovery=False))
    plaintext = runner.plaintext_accuracy(TuningBudget(), 0)
    print(
        f"recovery training ({args.objective}, {args.part}, lr {args.learning_rate:g}, batch 16) "
        "before private tuning"
    )
    print(f"eval {task.eval}; public text {task.public}; tuning {TuningBudget()}")
    print(f"plaintext accuracy at this budget: {plaintext:.3f}\n")
    columns = ("setting", "steps", "acc", "gap", "gap/0", "suite", "dsuite", "after", "bound", "dbound")
    print(
        f"   {columns[0]:18s} {columns[1]:>6s} "
        + " ".join(f"{c:>6s}" for c in columns[2:])
        + f" {'strongest attack':28s} {'GFLOP':>7s} {'recov.':>7s} held-out LM loss"
    )
    verdicts = []
    for name in SETTINGS:
        baseline = None
        for steps in (0, args.steps, 4 * args.steps):
            budget = RecoveryBudget(steps, 16, args.learning_rate, args.part, args.objective)
            started = time.perf_counter()
            result = measure(runner, name, budget)
            baseline = baseline or result
            print(
                row(name, steps, result, baseline) + f"  ({time.perf_counter() - started:.0f} s)", flush=True
            )
            if name in JUDGED and steps == 4 * args.steps:
                verdicts.append(verdict(name, result, baseline))
    print()
    for line in verdicts:
        print(line)


def verdict(name: str, result: TrialResult, baseline: TrialResult) -> str:
    """Target: the gap at 4N steps at most half the gap without, leakage at most 2 points higher."""
    gap, base_gap = result.accuracy_gap, baseline.accuracy_gap
    halved = gap <= base_gap / 2
    rise = result.leakage_bound - baseline.leakage_bound
    held = rise <= MAX_LEAKAGE_RISE
    if base_gap <= 0:
        return f"{name}: no gap to halve (gap without recovery {base_gap:+.3f})"
    ok = "MEETS" if halved and held else "MISSES"
    return (
        f"{name}: {ok} the target: gap {base_gap:+.3f} -> {gap:+.3f} ({gap / base_gap:.2f}x of it, "
        f"target <= 0.50x); leakage bound {baseline.leakage_bound:.3f} -> {result.leakage_bound:.3f} "
        f"({rise:+.3f}, target <= +{MAX_LEAKAGE_RISE:.2f})"
    )


if __name__ == "__main__":
    main()
