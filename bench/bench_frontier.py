"""Benchmark: the private frontier under the informed-adversary bound, on every token and on what matters.

Once the key's invertible operators (tilt, inflate, addv) are assumed known, only noise, flattening of
frequencies, training and per-occurrence substitution are left to protect the tokens. This measures what
each of them buys at the default fidelity (2,000 private SST-2 training sentences, 150 tuning steps of
batch 16, evaluated on SST-2 test, public text SST-2 dev, which shares phrases with train: a conservative
choice), every stage the cloud sees attacked (shaken, recovery-trained, tuned). Each row prints, averaged
over ``--seeds`` (key and tuning seeds 0..n-1, each against its own plaintext reference), the accuracy and
its gap to plaintext tuning, the recovered model's accuracy where the key substitutes, and the bound on
every token, on rare tokens and on planted canaries, with the share of tokens uploaded unchanged and the
blind floor; rows are appended to ``--out`` (JSON lines, one per seed) as soon as measured.
Targets: (i) sensitive leakage (rare-token bound and canaries) <= 2% at a gap <= 1 point; (ii) all-token
bound <= 25% at a gap <= 3 points.

    .venv/bin/python bench/bench_frontier.py [--rows 1,2,5] [--seeds 3] [--out frontier.jsonl]
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
from operators.settings import (  # noqa: E402
    HomophoneSettings,
    MixSettings,
    OperatorSettings,
    ShakeSettings,
    SubstituteSettings,
)

TARGETS = {  # name: (figure, largest leakage, largest gap, which gap)
    "(i) sensitive, private inference": ("sensitive", 0.02, 0.01, "gap"),
    "(i) sensitive, the recovered model": ("sensitive", 0.02, 0.01, "recovered_gap"),
    "(ii) all tokens, private inference": ("all", 0.25, 0.03, "gap"),
}
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
    substitute: SubstituteSettings | None = None,
    mix: MixSettings | None = None,
) -> Row:
    """One setting; ``frozen_rows``: recovery training and tuning train everything but the input
    embedding (part and mode ``body``), so every stage the cloud sees holds the rows as uploaded."""
    chain = tuple(OperatorSettings(op, intensity, 1.0) for op, intensity in ops)
    homophones = HomophoneSettings(share, copy_noise) if share < 1.0 else HomophoneSettings()
    part = "body" if frozen_rows else "all"
    budget = RecoveryBudget(recovery, part=part) if recovery else RecoveryBudget()
    tuning = replace(BUDGET, mode="body") if frozen_rows else BUDGET
    shaking = ShakeSettings(1.0, chain, homophones, substitute or SubstituteSettings(), mix or MixSettings())
    return Row(label, TrialSettings(shaking, tuning, budget))


def mixed(label: str, k: int, tau: float, noise: float, substitute: SubstituteSettings | None = None) -> Row:
    """A cluster-mixing row (operators/mixing.py), optionally with substitution."""
    return row(label, [], substitute=substitute, mix=MixSettings(k, tau, noise))


def substituted(
    label: str, epsilon: float, keep: int, classes=("numbers", "pieces"), k: int = 0, candidates: str = ""
) -> Row:
    """A substitution row: ``k`` > 0 for clusters of k tokens, else the whole vocabulary of a kind (or the
    ``candidates`` named)."""
    candidates = candidates or ("clusters" if k else "vocabulary")
    return row(label, [], substitute=SubstituteSettings(epsilon, candidates, k or 20, keep, tuple(classes)))


WORDS = ("numbers", "words")
RARE_TOKENS = SubstituteSettings(2.0, "vocabulary", 20, 1000, ("numbers", "words"))
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
    substituted("subst. eps 4, keep 1000, numbers", 4.0, 1000, ("numbers",)),  # 20
    substituted("subst. eps 4, keep 300, numbers", 4.0, 300, ("numbers",)),
    substituted("subst. eps 4, keep 1000, numbers+pieces", 4.0, 1000),
    substituted("subst. eps 4, keep 300, numbers+pieces", 4.0, 300),
    substituted("subst. eps 4, keep 100, numbers+pieces", 4.0, 100),
    substituted("subst. eps 1, keep 300, numbers+pieces", 1.0, 300),  # 25
    substituted("subst. eps 16, keep 300, numbers+pieces", 16.0, 300),
    substituted("subst. eps 4, every token", 4.0, 0),
    substituted("subst. clusters of 20, eps 4, every token", 4.0, 0, k=20),
    substituted("subst. clusters of 20, eps 8, every token", 8.0, 0, k=20),
    substituted("subst. eps 4, keep 30, numbers+pieces", 4.0, 30),  # 30
    substituted("subst. eps 2, keep 1000, numbers+words (rare-tokens)", 2.0, 1000, ("numbers", "words")),
    substituted("subst. eps 4, keep 1000, numbers+words", 4.0, 1000, ("numbers", "words")),
    substituted("subst. eps 2, keep 3000, numbers+words", 2.0, 3000, ("numbers", "words")),
    substituted("subst. eps 2, keep 300, numbers+words", 2.0, 300, ("numbers", "words")),
    mixed("mix 50 nearest, tau 1, noise 2", 50, 1.0, 2.0),  # 35
    mixed("mix 50 nearest, tau 1, noise 1", 50, 1.0, 1.0),
    mixed("mix 20 nearest, tau 0.5, noise 2", 20, 0.5, 2.0),
    mixed("mix 50 nearest, tau 1, noise 3", 50, 1.0, 3.0),
    mixed("mix 50 nearest, tau 1, noise 2 + rare-tokens", 50, 1.0, 2.0, RARE_TOKENS),
    mixed("mix 100 nearest, tau 1, noise 1", 100, 1.0, 1.0),  # 40
    *(
        substituted(f"subst. kept, eps {eps}, keep 1000, numbers+words", eps, 1000, WORDS, 0, "kept")
        for eps in (64.0, 128.0, 256.0)  # 41-43
    ),
    substituted("mask, keep 1000, numbers+words", 1.0, 1000, WORDS, 0, "mask"),
]


def short(name: str) -> str:
    return name.replace("shaken/", "").replace("informed/", "informed ")


def mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def cell(value: float | None, width: int = 6) -> str:
    return f"{value:{width}.3f}" if value is not None else " " * (width - 1) + "-"


def figures(results: list[TrialResult]) -> dict[str, float | None]:
    """A row's figures, averaged over its seeds."""
    sensitive = [max(r.leakage_bound_rare or 0.0, r.canary_recovery or 0.0) for r in results]
    return {
        "accuracy": mean([r.accuracy for r in results]),
        "gap": mean([r.accuracy_gap for r in results]),
        "recovered": mean([r.recovered_accuracy for r in results]),
        "recovered_gap": mean([r.recovered_gap for r in results]),
        "all": mean([r.leakage_bound for r in results]),
        "rare": mean([r.leakage_bound_rare for r in results]),
        "canary": mean([r.canary_recovery for r in results]),
        "sensitive": mean(sensitive),
        "unchanged": mean([r.tokens_unchanged for r in results]),
        "floor": mean([r.blind_floor for r in results]),
        "gflops": mean([r.cost_gflops for r in results]),
    }


HEADER = (
    f"{'setting':44s} {'acc':>6s} {'gap':>6s} {'recov.':>6s} {'all':>6s} {'set by':28s} {'rare':>6s} "
    f"{'canary':>6s} {'set by':24s} {'unch.':>6s} {'floor':>6s} {'GFLOP':>7s} {'min':>5s}"
)


def describe(label: str, results: list[TrialResult], seconds: float) -> str:
    f, last = figures(results), results[-1]
    return (
        f"{label:44s} {cell(f['accuracy'])} {f['gap']:+6.3f} {cell(f['recovered'])} {cell(f['all'])} "
        f"{short(last.strongest_bound_attack):28s} {cell(f['rare'])} {cell(f['canary'])} "
        f"{short(last.strongest_canary_attack):24s} {cell(f['unchanged'])} {cell(f['floor'])} "
        f"{f['gflops']:7,.0f} {seconds / 60 / len(results):5.1f}"
    )


def distance(f: dict[str, float | None], figure: str, bound: float, gap: float, which: str = "gap") -> float:
    """How far a row's figures are from a target (0: met; a gap not measured never meets it)."""
    measured = f[which] if f[which] is not None else float("inf")
    return max((f[figure] or 0.0) - bound, 0.0) + max(measured - gap, 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=None, help="1-based row numbers to run (default all).")
    parser.add_argument("--seeds", type=int, default=1, help="Key and tuning seeds per row (0..n-1).")
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
    seeds = list(range(args.seeds))
    plaintext = [runner.plaintext_accuracy(BUDGET, seed) for seed in seeds]
    print(
        f"plaintext tuning at {BUDGET}: accuracy {mean(plaintext):.3f} on SST-2 test (seeds {seeds}: "
        f"{', '.join(f'{p:.3f}' for p in plaintext)}); always answering the most common label: "
        f"{runner.data.baseline_accuracy:.3f}; public text SST-2 dev (shares phrases with train)",
        flush=True,
    )
    print(HEADER)
    measured = []
    for item in chosen:
        started = time.perf_counter()
        results = []
        for seed in seeds:
            result = runner.run(item.settings, key_seed=seed, tuning_seed=seed)
            results.append(result)
            with args.out.open("a", encoding="utf-8") as out:
                record = {**result.to_dict(), "label": item.label, "seed": seed}
                out.write(json.dumps(record, default=str) + "\n")
        print(describe(item.label, results, time.perf_counter() - started), flush=True)
        measured.append((item.label, figures(results)))
    print()
    for name, (figure, bound, gap, which) in TARGETS.items():
        label, f = min(measured, key=lambda m: distance(m[1], figure, bound, gap, which))
        met = "MET" if distance(f, figure, bound, gap, which) == 0 else "MISSED"
        shown = "not measured" if f[which] is None else f"{f[which]:+.3f}"
        print(
            f"target {name} ({figure} bound <= {bound:.0%}, gap <= {gap * 100:.0f} points): {met}; closest: "
            f"{label} ({figure} {f[figure]:.3f}, {which} {shown}, over {len(seeds)} seed(s))"
        )


if __name__ == "__main__":
    main()
