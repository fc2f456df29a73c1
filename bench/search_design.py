"""Measure the search benchmark's fixed design once: space-filling settings at the bench fidelity, each
with its cost, both leakage figures, and its private accuracy at 1/9, 1/3 and all of its tuning steps.

Roles: ``design`` (the points the surrogate is fitted on), ``heldout`` (fresh points from another
scramble, to check the surrogate), ``replicate`` (design points measured again with another study seed:
the noise of a measurement). Appends one JSON line per point to the output and skips points already
there, so it can be stopped and resumed, and sharded over processes (``--shard i/n``).

    .venv/bin/python bench/search_design.py [--design 200] [--heldout 12] [--replicates 8] [--shard 0/2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

from search_common import DESIGN, FIDELITY, default_sst2, design_points, settings_of, sst2_task  # noqa: E402

from adaptive.study import measurement_seed  # noqa: E402
from objectives.models import DEFAULT_MODEL  # noqa: E402
from objectives.rungs import Rungs, rung_steps  # noqa: E402
from objectives.trial import MemoryReferences, TrialRunner  # noqa: E402


def plan(design: int, heldout: int, replicates: int) -> list[tuple[str, int, dict, int]]:
    """(role, index, params, study seed) of every point to measure."""
    points = design_points(design, seed=0)
    items = [("design", i, p, 0) for i, p in enumerate(points)]
    checks = [("heldout", i, p, 0) for i, p in enumerate(design_points(heldout, seed=1))]
    checks += [("replicate", i, points[i], 1) for i in range(replicates)]
    first = (3 * len(items)) // 4  # the checks before the last design points: a cut-short run has both
    return items[:first] + checks + items[first:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--design", type=int, default=200)
    parser.add_argument("--heldout", type=int, default=12)
    parser.add_argument("--replicates", type=int, default=8)
    parser.add_argument("--shard", default="0/1", help="i/n: measure every n-th point from the i-th")
    parser.add_argument("--out", type=Path, default=DESIGN)
    parser.add_argument("--sst2", type=Path, default=default_sst2())
    args = parser.parse_args()
    shard, shards = map(int, args.shard.split("/"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if args.out.exists():
        for line in args.out.read_text().splitlines():
            record = json.loads(line)
            done.add((record["role"], record["index"]))
    runner = TrialRunner(sst2_task(args.sst2), DEFAULT_MODEL, FIDELITY, MemoryReferences())
    todo = [
        item for n, item in enumerate(plan(args.design, args.heldout, args.replicates)) if n % shards == shard
    ]
    todo = [item for item in todo if (item[0], item[1]) not in done]
    print(f"{len(todo)} points to measure in shard {args.shard}", flush=True)
    for count, (role, index, params, seed) in enumerate(todo, 1):
        settings = settings_of(params)
        started = time.perf_counter()
        rungs = Rungs(rung_steps(settings.tuning.steps, rungs=2))
        result = runner.run(
            settings, key_seed=measurement_seed(seed, settings), tuning_seed=seed, rungs=rungs
        )
        record = {
            "role": role,
            "index": index,
            "seed": seed,
            "params": params,
            "settings": settings.to_dict(),
            "cost_gflops": result.cost_gflops,
            "leakage_bound": result.leakage_bound,
            "leakage_attacks": result.leakage_attacks,
            "accuracy": result.accuracy,
            "accuracy_by_steps": result.accuracy_by_steps,
            "plaintext_accuracy": result.plaintext_accuracy,
            "baseline_accuracy": result.baseline_accuracy,
            "seconds": {stage: round(t.wall, 3) for stage, t in result.seconds.items()},
            "wall": round(time.perf_counter() - started, 3),
        }
        with args.out.open("a") as out:
            out.write(json.dumps(record, sort_keys=True) + "\n")
        print(
            f"[{count}/{len(todo)}] {role} {index}: accuracy {result.accuracy:.3f} "
            f"{result.accuracy_by_steps} bound {result.leakage_bound:.3f} cost {result.cost_gflops:.0f} "
            f"({record['wall']:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
