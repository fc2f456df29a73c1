"""Benchmark: search strategies against random search, on a surrogate fitted to a measured design, and a
small real-run check on SST-2.

1. The surrogate: random forests fitted on the design measured by ``bench/search_design.py`` (space-filling
   settings at the bench fidelity), checked against fresh measurements of held-out settings (Spearman
   rank correlation printed), with the measured replicate noise added to every answer.
2. Strategies (sampler x how trials spend tuning, adaptive/screening.py) run the product's own objective
   on the surrogate for ``--seeds`` seeds. The budget is counted in trial-equivalents: the seconds real
   trials would have taken (attacks, tuning up to where a trial stopped, scorings, plaintext references)
   over the mean seconds of one plain trial of the design. Printed per strategy at 10/20/30/50
   equivalents: mean hypervolume with a 95% interval, and the equivalents needed to reach 90% of the best
   known front's hypervolume (the front of the design's and every run's settings). Hypervolumes are of the
   settings found, valued without the measurement noise (the surrogate's mean): the runs act on noisy
   answers, but a lucky draw is not a better setting. Hypervolume as before:
   objectives scaled so that 1 is worst (1 - accuracy, cost / the costliest setting of the design,
   leakage bound), reference point (1, 1, 1); no caps unless ``--max-leakage`` (then only feasible points
   count; under the default cap of 0.10 no learnt setting exists at this fidelity).
   Targets: the default reaches 90% in at most a third of random's equivalents, and >= 1.3x random's
   hypervolume at 30.
3. ``--real N``: the default strategy and random search on SST-2 itself for N seeds and ``--real-minutes``
   each: the wall time until each found a setting within one accuracy point of the best either found.

    .venv/bin/python bench/bench_search.py [--seeds 20] [--strategies ...] [--real 0]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import optuna  # noqa: E402
from optuna._hypervolume import compute_hypervolume  # noqa: E402
from search_common import DESIGN, FIDELITY, SPACE, default_sst2, sst2_task  # noqa: E402
from search_surrogate import Surrogate, SurrogateRunner, load_design  # noqa: E402

from adaptive.samplers import DEFAULT_SAMPLER  # noqa: E402
from adaptive.screening import DEFAULT_STRATEGY  # noqa: E402
from adaptive.study import (  # noqa: E402
    Caps,
    StudyConfig,
    is_measured,
    objective,
    objectives_of,
    open_study,
    trial_settings,
)
from objectives.models import DEFAULT_MODEL  # noqa: E402
from objectives.trial import MemoryReferences, TrialRunner, TrialSettings  # noqa: E402

BUDGETS = (10, 20, 30, 50)
STRATEGIES = {
    "random": ("random", "plain"),
    "tpe-plain": ("tpe", "plain"),
    "tpe-screened": ("tpe", "screened"),
    "tpe-halving": ("tpe", "halving"),
    "gp-screened": ("gp", "screened"),
    "gp-halving": ("gp", "halving"),
    "botorch-screened": ("botorch", "screened"),
}
SLOW = ("gp", "botorch")
CAPS = [Caps()]  # the caps every simulated study gets (--max-leakage)
COUNTS: dict[str, list[dict[str, int]]] = {
    name: [] for name in STRATEGIES
}  # per run: what trials did  # seconds per suggestion: fewer seeds with --slow-seeds
DEFAULT = f"{DEFAULT_SAMPLER}-{DEFAULT_STRATEGY}"


@dataclass(frozen=True)
class Scale:
    """How objectives become losses in [0, 1]: accuracy from ``floor`` (loss 1) to 1 (loss 0), cost over
    the costliest design setting, leakage as it is; anything beyond 1 adds no volume."""

    worst_cost: float
    floor: float  # the baseline accuracy (primary: a setting that learnt nothing adds nothing), or 0

    def losses(self, points: list[tuple[float, float, float]]) -> np.ndarray:
        rows = [((1 - a) / (1 - self.floor), c / self.worst_cost, leak) for a, c, leak in points]
        return np.minimum(np.array(rows), 1.0)


def hypervolume(points: list[tuple[float, float, float]], scale: Scale) -> float:
    if not points:
        return 0.0
    return float(compute_hypervolume(scale.losses(points), np.ones(3)))


def simulate(
    name: str, seed: int, surrogate: Surrogate, real: TrialRunner, unit: float, horizon: float
) -> list[tuple[float, tuple[float, float, float]]]:
    """One run of a strategy on the surrogate: (trial-equivalents spent, objectives) of each point
    measured at full budget, in order. The clock counts what real trials would have taken plus the
    sampler's own seconds per suggestion."""
    sampler, strategy = STRATEGIES[name]
    config = StudyConfig(DEFAULT_MODEL, real.task, FIDELITY, SPACE, CAPS[0], "bench", seed, strategy=strategy)
    study = open_study(f"{name}-{seed}", optuna.storages.InMemoryStorage(), config, sampler)
    runner = SurrogateRunner(surrogate, real, seed)
    run = objective(config, runner)  # type: ignore[arg-type]  # the surrogate answers like a TrialRunner
    measured = []
    while runner.clock < horizon * unit:
        started = time.perf_counter()
        study.optimize(run, n_trials=1)
        runner.clock += time.perf_counter() - started  # the sampler's own time counts (the surrogate's is ms)
        trial = study.trials[-1]
        if is_measured(trial) and all(v <= 0 for v in trial.constraints.values()):
            measured.append((runner.clock / unit, true_objectives(surrogate, trial)))
    trials = study.get_trials(deepcopy=False)
    COUNTS[name].append(
        {
            "candidates": len(trials),
            "screened": sum(bool(t.user_attrs.get("screened")) for t in trials),
            "stopped at the rung": sum(t.user_attrs.get("stopped_at_steps") is not None for t in trials),
            "leakage reused": sum(bool(t.user_attrs.get("leakage_reused")) for t in trials),
            "full budget": len(measured),
        }
    )
    return measured


def true_objectives(surrogate: Surrogate, trial: optuna.trial.FrozenTrial) -> tuple[float, float, float]:
    """A measured setting's objectives without the measurement noise (the surrogate's mean): what the
    strategy found, not how lucky its draws were; the run itself saw and acted on the noisy values."""
    settings = trial_settings(trial)
    _, cost, _ = objectives_of(trial)
    return surrogate.predict("accuracy", settings), cost, surrogate.predict("leakage", settings)


def hv_at(measured: list, budget: float, scale: Scale) -> float:
    return hypervolume([point for spent, point in measured if spent <= budget], scale)


def reach(measured: list, target: float, scale: Scale) -> float:
    """Trial-equivalents until the hypervolume reached ``target`` (inf: not within the run)."""
    points = []
    for spent, point in measured:
        points.append(point)
        if hypervolume(points, scale) >= target:
            return spent
    return math.inf


def interval(values: list[float]) -> str:
    mean = statistics.mean(values)
    half = 1.96 * statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return f"{mean:.4f} ± {half:.4f}"


def surrogate_part(args: argparse.Namespace, real: TrialRunner) -> None:
    records = load_design(args.design)
    worst_cost = max(r["cost_gflops"] for r in records)
    counts = {role: sum(r["role"] == role for r in records) for role in ("design", "heldout", "replicate")}
    surrogate = Surrogate.fit(records)
    print(
        f"1. surrogate fitted on {counts['design']} measured design settings; checked on "
        f"{counts['heldout']} held-out settings; noise from {counts['replicate']} replicates"
    )
    for name, rho in surrogate.check(records).items():
        noise = surrogate.noise.get(name)
        extra = f", replicate noise (sd) {noise:.4f}" if noise is not None else ""
        print(f"   {name:18s} rank correlation on held-out settings {rho:+.3f}{extra}")
    design = [r for r in records if r["role"] == "design"]
    unit = statistics.mean(
        sum(r["seconds"].get(k, 0.0) for k in ("shaking", "attacks", "tuning", "inference")) for r in design
    )
    print(f"   one trial-equivalent = {unit:.1f} s (a plain trial of the design, on average)")

    horizon = max(BUDGETS)
    runs: dict[str, list] = {}
    print(f"\n2. strategies over {args.seeds} seeds, up to {horizon} trial-equivalents each", flush=True)
    for name in args.strategies:
        started = time.perf_counter()
        seeds = args.slow_seeds if STRATEGIES[name][0] in SLOW and args.slow_seeds else args.seeds
        runs[name] = [simulate(name, seed, surrogate, real, unit, horizon) for seed in range(seeds)]
        counts = {k: statistics.mean(c[k] for c in COUNTS[name]) for k in COUNTS[name][0]}
        summary = ", ".join(f"{k} {v:.1f}" for k, v in counts.items())
        print(
            f"   {name} ({seeds} seeds, {time.perf_counter() - started:.0f} s): per run {summary}", flush=True
        )
    baseline = statistics.mean(r["baseline_accuracy"] for r in design)
    primary, zero = Scale(worst_cost, baseline), Scale(worst_cost, 0.0)
    print(f"   hypervolume from the baseline accuracy {baseline:.3f} (always the most common label) up;")
    measured = [
        (surrogate.predict("accuracy", s), r["cost_gflops"], surrogate.predict("leakage", s))
        for r in design
        for s in [TrialSettings.from_dict(r["settings"])]
    ]
    measured += [point for name in runs for run in runs[name] for _, point in run]
    measured = [point for point in measured if CAPS[0].allows(*point)]
    compare(runs, primary, horizon, measured)
    print("   the same runs, hypervolume from accuracy 0 (as the earlier benchmark measured it):")
    compare(runs, zero, horizon, measured)


def compare(runs: dict[str, list], scale: Scale, horizon: float, design: list[tuple]) -> None:
    """The table of one hypervolume scale, the default against random, and the best strategy."""
    best = hypervolume(design, scale)
    print(
        f"   best known front: the design's and every run's settings ({len(design)}), hypervolume {best:.4f}"
    )
    header = "".join(f"{f'HV @{b}':>18s}" for b in BUDGETS)
    print(f"   {'strategy':16s}{header}   to 90% of best (mean; runs that never got there)")
    reached: dict[str, list[float]] = {}
    at30: dict[str, list[float]] = {}
    for name, seeds in runs.items():
        cells = "".join(f"{interval([hv_at(r, b, scale) for r in seeds]):>18s}" for b in BUDGETS)
        reached[name] = [reach(r, 0.9 * best, scale) for r in seeds]
        at30[name] = [hv_at(r, 30, scale) for r in seeds]
        never = sum(math.isinf(x) for x in reached[name])
        mean = f"{statistics.mean(capped(reached[name], horizon)):.1f}" + ("+" if never else "")
        print(f"   {name:16s}{cells}   {mean:>6s} ({never} of {len(seeds)} never)")
    if "random" in runs and DEFAULT in runs:
        ratio = statistics.mean(at30[DEFAULT]) / statistics.mean(at30["random"])
        need = statistics.mean(capped(reached[DEFAULT], horizon))
        need_random = statistics.mean(capped(reached["random"], horizon))
        print(
            f"   default ({DEFAULT}) vs random at 30: {ratio:.2f}x hypervolume (target >= 1.3x: "
            f"{'meets' if ratio >= 1.3 else 'MISSES'})"
        )
        plus = "+" if math.inf in reached["random"] else ""
        verdict = "meets" if need <= need_random / 3 else "MISSES"
        print(
            f"   to 90% of best: {need:.1f} vs {need_random:.1f}{plus} equivalents, {need / need_random:.2f} "
            f"of random's (target <= 1/3: {verdict}; runs that never got there count as {horizon})"
        )
    best_name = max(at30, key=lambda n: statistics.mean(at30[n]))
    print(f"   highest mean hypervolume at 30: {best_name}")


def capped(values: list[float], horizon: float) -> list[float]:
    return [min(v, horizon) for v in values]


def real_part(args: argparse.Namespace, real: TrialRunner) -> None:
    """Default vs random on SST-2 itself: wall time to within a point of the best accuracy found."""
    print(f"\n3. real runs on SST-2: {DEFAULT} and random, {args.real} seeds, {args.real_minutes} min each")
    for seed in range(args.real):
        found: dict[str, list[tuple[float, float]]] = {}
        for name in (DEFAULT, "random"):
            sampler, strategy = STRATEGIES[name]
            config = StudyConfig(
                DEFAULT_MODEL, real.task, FIDELITY, SPACE, Caps(), "bench", seed, strategy=strategy
            )
            study = open_study(f"real-{name}-{seed}", optuna.storages.InMemoryStorage(), config, sampler)
            run, started, found[name] = objective(config, real), time.perf_counter(), []
            while time.perf_counter() - started < args.real_minutes * 60:
                study.optimize(run, n_trials=1)
                if is_measured(study.trials[-1]):
                    found[name].append((time.perf_counter() - started, objectives_of(study.trials[-1])[0]))
        top = max(a for runs in found.values() for _, a in runs)
        times = {n: next((t for t, a in runs if a >= top - 0.01), math.inf) for n, runs in found.items()}
        print(
            f"   seed {seed}: best accuracy {top:.4f}; minutes to within a point: "
            + ", ".join(f"{n} {t / 60:.1f}" for n, t in times.items())
            + f"; ratio {times[DEFAULT] / times['random']:.2f} (target <= 0.5)",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument(
        "--strategies",
        nargs="+",
        default=["random", "tpe-plain", "tpe-screened", "tpe-halving", "gp-screened", "botorch-screened"],
        choices=list(STRATEGIES),
    )
    parser.add_argument(
        "--slow-seeds", type=int, default=0, help="Seeds for the gp and botorch samplers (0: --seeds)."
    )
    parser.add_argument(
        "--max-leakage", type=float, default=None, help="A leakage cap for every simulated study (none)."
    )
    parser.add_argument("--design", type=Path, default=DESIGN)
    parser.add_argument("--real", type=int, default=0, help="Seeds of the real-run check (0: skip it).")
    parser.add_argument("--real-minutes", type=float, default=15.0)
    parser.add_argument("--sst2", type=Path, default=default_sst2())
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    CAPS[0] = Caps(max_leakage=args.max_leakage)
    real = TrialRunner(sst2_task(args.sst2), DEFAULT_MODEL, FIDELITY, MemoryReferences())
    surrogate_part(args, real)
    if args.real:
        real_part(args, real)


if __name__ == "__main__":
    main()
