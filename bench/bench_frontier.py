"""Benchmark: the private frontier under the informed-adversary bound.

Once the key's invertible operators (tilt, inflate, addv) are assumed known, only noise, flattening of
frequencies and training are left to protect the tokens. This measures what each of them buys: gaussian,
laplace and dx-fixp noise at 2-6x the embedding's scale, homophonic levels, and recovery-training budgets,
at the default fidelity (2,000 private SST-2 training sentences, 150 tuning steps of batch 16, evaluated
on SST-2 test, public text SST-2 dev), every stage the cloud sees attacked (shaken, recovery-trained,
tuned). Each row prints the accuracy gap to plaintext tuning at the same budget, the bound and what sets
it, the suite's best attack (a lower bound) and the cost, as soon as it is measured; rows are appended to
``--out`` (JSON lines) so a long run can be read while it goes on.
Target: a setting with bound < 5% and a gap <= 1 point.

    .venv/bin/python bench/bench_frontier.py [--rows 1,2,5] [--out frontier.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from objectives.models import DEFAULT_MODEL  # noqa: E402
from objectives.recovery_training import RecoveryBudget  # noqa: E402
from objectives.task import DataSource, TaskSpec  # noqa: E402
from objectives.trial import Fidelity, MemoryReferences, TrialResult, TrialRunner, TrialSettings  # noqa: E402
from objectives.tuning import TuningBudget  # noqa: E402
from operators.settings import HomophoneSettings, OperatorSettings, ShakeSettings  # noqa: E402

TARGET_BOUND = 0.05
TARGET_GAP = 0.01
BUDGET = TuningBudget(steps=150, batch_size=16, learning_rate=1e-4, mode="full")
FIDELITY = Fidelity(attack_tuned=True, compare_recovery=False)


@dataclass(frozen=True)
class Row:
    label: str
    settings: TrialSettings


def row(
    label: str,
    ops: list[tuple[str, float]],
    share: float = 1.0,
    copy_noise: float = 0.0,
    recovery: int = 0,
    frozen_rows: bool = False,
) -> Row:
    """One setting; ``frozen_rows``: recovery training and tuning train everything but the input
    embedding (part and mode ``body``), so every stage the cloud sees holds the rows as uploaded."""
    chain = tuple(OperatorSettings(op, intensity, 1.0) for op, intensity in ops)
    homophones = HomophoneSettings(share, copy_noise) if share < 1.0 else HomophoneSettings()
    part = "body" if frozen_rows else "all"
    budget = RecoveryBudget(recovery, part=part) if recovery else RecoveryBudget()
    tuning = replace(BUDGET, mode="body") if frozen_rows else BUDGET
    return Row(label, TrialSettings(ShakeSettings(1.0, chain, homophones), tuning, budget))


ROWS = [
    row("tilt 1.5 + gaussian 1.5 (1:1)", [("tilt", 1.5), ("gaussian", 1.5)]),
    row("gaussian 4, recovery 600", [("gaussian", 4.0)], recovery=600),
    row("flat 0.002/1 + gaussian 4, recovery 600", [("gaussian", 4.0)], 0.002, 1.0, 600),
    row("flat 0.002/1 + gaussian 6, recovery 600", [("gaussian", 6.0)], 0.002, 1.0, 600),
    row("flat 0.001/1 + gaussian 6, recovery 600", [("gaussian", 6.0)], 0.001, 1.0, 600),
    row("flat 0.002/1 + gaussian 6, no recovery", [("gaussian", 6.0)], 0.002, 1.0),
    row("gaussian 6 (1:1), no recovery", [("gaussian", 6.0)]),
    row("flat 0.002/1 + laplace 6, no recovery", [("laplace", 6.0)], 0.002, 1.0),
    row("flat 0.002/1 + dx-fixp 6, no recovery", [("dx-fixp", 6.0)], 0.002, 1.0),
    row("flat 0.002/1 + gaussian 2, recovery 600", [("gaussian", 2.0)], 0.002, 1.0, 600),
    row("flat 0.0005/1 + gaussian 6, no recovery", [("gaussian", 6.0)], 0.0005, 1.0),
    row("flat 0.001/0 + gaussian 8, no recovery", [("gaussian", 8.0)], 0.001, 0.0),
    row("gaussian 6, recovery 600, rows frozen", [("gaussian", 6.0)], recovery=600, frozen_rows=True),
    row("flat 0.002/1 + gaussian 6, rec. 600, frozen", [("gaussian", 6.0)], 0.002, 1.0, 600, True),
    row("gaussian 6 (1:1), rows frozen in tuning", [("gaussian", 6.0)], frozen_rows=True),
    row("gaussian 2 (1:1), no recovery", [("gaussian", 2.0)]),
    row("gaussian 3 (1:1), no recovery", [("gaussian", 3.0)]),
    row("gaussian 4 (1:1), no recovery", [("gaussian", 4.0)]),
    row("flat 0.002/1 + gaussian 4, rec. 600, frozen", [("gaussian", 4.0)], 0.002, 1.0, 600, True),
]


def short(name: str) -> str:
    return name.replace("shaken/", "").replace("informed/", "informed ")


def describe(label: str, result: TrialResult, seconds: float) -> str:
    return (
        f"{label:44s} {result.accuracy:6.3f} {result.accuracy_gap:+6.3f} {result.leakage_bound:6.3f} "
        f"{short(result.strongest_bound_attack):34s} {result.leakage_attacks:6.3f} "
        f"{short(result.strongest_attack):24s} {result.cost_gflops:8,.0f} {seconds / 60:5.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=None, help="1-based row numbers to run (default all).")
    parser.add_argument("--out", type=Path, default=Path("bench-frontier.jsonl"))
    parser.add_argument(
        "--sst2", type=Path, default=Path(os.environ.get("SHAKETUNE_SST2", "../shared/data/sst2"))
    )
    args = parser.parse_args()
    chosen = [ROWS[int(i) - 1] for i in args.rows.split(",")] if args.rows else ROWS
    task = TaskSpec(
        DataSource(str(args.sst2 / "train.tsv")),
        DataSource(str(args.sst2 / "test.tsv")),
        DataSource(str(args.sst2 / "dev.tsv")),
    )
    runner = TrialRunner(task, DEFAULT_MODEL, FIDELITY, MemoryReferences())
    plaintext = runner.plaintext_accuracy(BUDGET, 0)
    print(
        f"plaintext tuning at {BUDGET}: accuracy {plaintext:.3f} on SST-2 test; always answering the most "
        f"common label: {runner.data.baseline_accuracy:.3f}",
        flush=True,
    )
    print(
        f"{'setting':44s} {'acc':>6s} {'gap':>6s} {'bound':>6s} {'set by':34s} {'suite':>6s} "
        f"{'best attack run':24s} {'GFLOP':>8s} {'min':>5s}"
    )
    best = None
    for item in chosen:
        started = time.perf_counter()
        result = runner.run(item.settings, key_seed=0, tuning_seed=0)
        seconds = time.perf_counter() - started
        print(describe(item.label, result, seconds), flush=True)
        with args.out.open("a", encoding="utf-8") as out:
            out.write(
                json.dumps({**result.to_dict(), "label": item.label, "wall_seconds": seconds}, default=str)
                + "\n"
            )
        distance = max(result.leakage_bound - TARGET_BOUND, 0) + max(result.accuracy_gap - TARGET_GAP, 0)
        if best is None or distance < best[0]:
            best = (distance, item.label, result)
    distance, label, result = best
    met = "MET" if distance == 0 else "MISSED"
    print(
        f"\ntarget (bound < {TARGET_BOUND:.0%}, gap <= {TARGET_GAP:.0%} point): {met}; closest: {label} "
        f"(bound {result.leakage_bound:.3f}, gap {result.accuracy_gap:+.3f})"
    )


if __name__ == "__main__":
    main()
