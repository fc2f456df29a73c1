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
   known front's hypervolume, for two readings of "best known": the front of the measured design (200
   space-filling settings: what a search of that many trials found, reachable by one run) and the front
   of the design and every run's settings pooled (thousands of settings: no single run gets near it).
   Runs of ``--reach-strategies`` go on to ``--reach-horizon`` equivalents so that random search's count
   is measured rather than censored. Hypervolumes are of the
   settings found, valued without the measurement noise (the surrogate's mean): the runs act on noisy
   answers, but a lucky draw is not a better setting. Hypervolume as before:
   objectives scaled so that 1 is worst (1 - accuracy, cost / the costliest setting of the design,
   leakage bound), reference point (1, 1, 1); no caps unless ``--max-leakage`` (then only feasible points
   count; under the default cap of 0.10 no learnt setting exists at this fidelity).
   Targets: the default reaches 90% in at most a third of random's equivalents, and >= 1.3x random's
   hypervolume at 30.
3. ``--real N``: ``--real-strategies`` (the default and random search) on SST-2 itself for N seeds (from
   ``--real-first``) and ``--real-minutes`` each, every run appended to ``--real-log``; then, for every
   seed the log holds both of at that length, the time until each found a setting within one accuracy
   point of the best either found, and the hypervolume of each run's front as measured. Time is this
   process's CPU time (one thread: OMP_NUM_THREADS=1), which is the wall time on an otherwise idle core
   and does not drift when the machine is shared; each run has its own plaintext-reference cache, so
   neither pays for the other. Runs can be split over processes and sessions (random's do not depend on
   the default's settings). ``--seeds 0`` skips parts 1-2.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_search.py [--seeds 20] [--strategies ...] [--real 0]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import optuna  # noqa: E402
from optuna._hypervolume import compute_hypervolume  # noqa: E402
from search_common import DESIGN, FIDELITY, REAL_LOG, SPACE, default_sst2, sst2_task  # noqa: E402
from search_surrogate import Surrogate, SurrogateRunner, load_records  # noqa: E402

from adaptive import samplers  # noqa: E402
from adaptive.samplers import DEFAULT_SAMPLER  # noqa: E402
from adaptive.screening import DEFAULT_STRATEGY  # noqa: E402
from adaptive.study import Caps, StudyConfig, objective, open_study, trial_settings  # noqa: E402
from adaptive.trials import SCREENED_ATTR, is_feasible, is_measured, objectives_of  # noqa: E402
from objectives.models import DEFAULT_MODEL  # noqa: E402
from objectives.task import TaskSpec  # noqa: E402
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
}  # per run: what its trials did by the last budget of the table
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


def design_scale(records: list[dict]) -> Scale:
    """The primary scale: cost over the costliest setting of the design, accuracy from its baseline."""
    design = [r for r in records if r["role"] == "design"]
    worst = max(r["cost_gflops"] for r in records)
    return Scale(worst, statistics.mean(r["baseline_accuracy"] for r in design))


def hypervolume(points: list[tuple[float, float, float]], scale: Scale) -> float:
    if not points:
        return 0.0
    return float(compute_hypervolume(scale.losses(points), np.ones(3)))


def bench_study(
    name: str, seed: int, task: TaskSpec, caps: Caps, prefix: str = ""
) -> tuple[StudyConfig, optuna.Study]:
    """A strategy's study at the bench space and fidelity, in memory (simulated and real runs alike)."""
    sampler, strategy = STRATEGIES[name]
    config = StudyConfig(DEFAULT_MODEL, task, FIDELITY, SPACE, caps, "bench", seed, strategy=strategy)
    return config, open_study(f"{prefix}{name}-{seed}", optuna.storages.InMemoryStorage(), config, sampler)


def simulate(
    name: str, seed: int, surrogate: Surrogate, real: TrialRunner, unit: float, horizon: float
) -> list[tuple[float, tuple[float, float, float]]]:
    """One run of a strategy on the surrogate: (trial-equivalents spent, objectives) of each point
    measured at full budget, in order. The clock counts what real trials would have taken plus the
    sampler's own seconds per suggestion."""
    config, study = bench_study(name, seed, real.task, CAPS[0])
    runner = SurrogateRunner(surrogate, real, seed)
    run = objective(config, runner)  # type: ignore[arg-type]  # the surrogate answers like a TrialRunner
    measured: list[tuple[float, tuple[float, float, float]]] = []
    while runner.clock < horizon * unit:
        started = time.process_time()
        study.optimize(run, n_trials=1)
        runner.clock += time.process_time() - started  # the sampler's own time counts (the surrogate's is ms)
        trial = study.get_trials(deepcopy=False)[-1]
        if is_measured(trial) and is_feasible(trial):
            measured.append((runner.clock / unit, true_objectives(surrogate, trial)))
        if len(COUNTS[name]) <= seed and runner.clock >= max(BUDGETS) * unit:
            COUNTS[name].append(counts_of(study, measured))  # the table's counts: at the last budget
    return measured


def counts_of(study: optuna.Study, measured: list) -> dict[str, int]:
    """What a run's trials did so far: candidates, screened, stopped at the rung, reused, full budget."""
    trials = study.get_trials(deepcopy=False)
    return {
        "candidates": len(trials),
        "screened": sum(bool(t.user_attrs.get(SCREENED_ATTR)) for t in trials),
        "stopped at the rung": sum(t.user_attrs.get("stopped_at_steps") is not None for t in trials),
        "leakage reused": sum(bool(t.user_attrs.get("leakage_reused")) for t in trials),
        "full budget": len(measured),
    }


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
    records = load_records(args.design)
    primary = design_scale(records)
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

    runs: dict[str, list] = {}
    horizons = {
        name: max(args.reach_horizon, max(BUDGETS)) if name in args.reach_strategies else max(BUDGETS)
        for name in args.strategies
    }
    print(f"\n2. strategies over {args.seeds} seeds, up to {max(BUDGETS)} trial-equivalents each", flush=True)
    for name in args.strategies:
        started = time.perf_counter()
        seeds = args.slow_seeds if STRATEGIES[name][0] in SLOW and args.slow_seeds else args.seeds
        runs[name] = [simulate(name, seed, surrogate, real, unit, horizons[name]) for seed in range(seeds)]
        counts = {k: statistics.mean(c[k] for c in COUNTS[name]) for k in COUNTS[name][0]}
        summary = ", ".join(f"{k} {v:.1f}" for k, v in counts.items())
        print(
            f"   {name} ({seeds} seeds to {horizons[name]} equivalents, "
            f"{time.perf_counter() - started:.0f} s): per run at {max(BUDGETS)}: {summary}",
            flush=True,
        )
    zero = replace(primary, floor=0.0)
    print(f"   hypervolume from the baseline accuracy {primary.floor:.3f} (always the most common label) up;")
    design_front = [
        (surrogate.predict("accuracy", s), r["cost_gflops"], surrogate.predict("leakage", s))
        for r in design
        for s in [TrialSettings.from_dict(r["settings"])]
    ]
    design_front = [point for point in design_front if CAPS[0].allows(*point)]
    near_baseline(design_front, primary, surrogate.noise["accuracy"])
    pooled = design_front + [point for name in runs for run in runs[name] for _, point in run]
    pooled = [point for point in pooled if CAPS[0].allows(*point)]
    bests = {
        f"the design's front ({len(design_front)} settings)": design_front,
        f"the design's and every run's settings ({len(pooled)})": pooled,
    }
    compare(runs, primary, horizons, bests)
    print("   the same runs, hypervolume from accuracy 0 (as the earlier benchmark measured it):")
    compare(runs, zero, horizons, bests)


def near_baseline(front: list[tuple[float, float, float]], scale: Scale, noise: float) -> None:
    """How much of a front's hypervolume on ``scale`` (from the baseline) lies within half a measurement's
    noise of the baseline: volume one measurement cannot tell from learning nothing, found by covering
    the space."""
    baseline, floor = scale.floor, scale.floor + noise / 2
    full = hypervolume(front, scale)
    clear = hypervolume(front, replace(scale, floor=floor)) * (1 - floor) / (1 - baseline)  # same units
    print(
        f"   the design's front: {1 - clear / full:.0%} of its hypervolume from the baseline lies within "
        f"half a measurement's noise ({noise / 2:.3f}) of the baseline accuracy; "
        f"{sum(a > floor for a, _, _ in front)} of {len(front)} settings are clear of it"
    )


def compare(
    runs: dict[str, list], scale: Scale, horizons: dict[str, float], bests: dict[str, list[tuple]]
) -> None:
    """The table of one hypervolume scale, the default against random, and the best strategy."""
    header = "".join(f"{f'HV @{b}':>18s}" for b in BUDGETS)
    print(f"   {'strategy':16s}{header}")
    at30: dict[str, list[float]] = {}
    for name, seeds in runs.items():
        cells = "".join(f"{interval([hv_at(r, b, scale) for r in seeds]):>18s}" for b in BUDGETS)
        at30[name] = [hv_at(r, 30, scale) for r in seeds]
        print(f"   {name:16s}{cells}")
    if "random" in runs and DEFAULT in runs:
        ratio = statistics.mean(at30[DEFAULT]) / statistics.mean(at30["random"])
        print(
            f"   default ({DEFAULT}) vs random at 30: {ratio:.2f}x hypervolume (target >= 1.3x: "
            f"{'meets' if ratio >= 1.3 else 'MISSES'})"
        )
    for label, points in bests.items():
        best = hypervolume(points, scale)
        print(f"   equivalents to 90% of the best known front, {label}: hypervolume {best:.4f}")
        reached = {}
        for name, seeds in runs.items():
            reached[name] = [reach(r, 0.9 * best, scale) for r in seeds]
            never = sum(math.isinf(x) for x in reached[name])
            mean = statistics.mean(capped(reached[name], horizons[name]))
            print(
                f"     {name:16s} {mean:6.1f}{'+' if never else ' '} (mean; {never} of {len(seeds)} runs "
                f"never got there within {horizons[name]}, counted as {horizons[name]})"
            )
        if "random" in runs and DEFAULT in runs:
            need = statistics.mean(capped(reached[DEFAULT], horizons[DEFAULT]))
            need_random = statistics.mean(capped(reached["random"], horizons["random"]))
            censored = any(math.isinf(x) for x in reached["random"])
            verdict = "meets" if need <= need_random / 3 else "MISSES"
            print(
                f"     default: {need / need_random:.2f} of random's equivalents (target <= 1/3: {verdict}"
                + ("; random's runs censored at the horizon: its figure is a lower bound" if censored else "")
                + ")"
            )
    best_name = max(at30, key=lambda n: statistics.mean(at30[n]))
    print(f"   highest mean hypervolume at 30: {best_name}")


def capped(values: list[float], horizon: float) -> list[float]:
    return [min(v, horizon) for v in values]


def real_run(name: str, seed: int, minutes: float, task: TaskSpec) -> dict:
    """One strategy on SST-2 for ``minutes`` of CPU time: (CPU seconds, accuracy) of each tuned trial,
    and its three objectives (for a comparison of fronts, not only of the best accuracy)."""
    config, study = bench_study(name, seed, task, Caps(), prefix="real-")
    runner = TrialRunner(task, DEFAULT_MODEL, FIDELITY, MemoryReferences())  # its own references
    run, started, found, objectives = objective(config, runner), time.process_time(), [], []
    while time.process_time() - started < minutes * 60:
        study.optimize(run, n_trials=1)
        trial = study.get_trials(deepcopy=False)[-1]
        if is_measured(trial):
            values = objectives_of(trial)
            found.append((time.process_time() - started, values[0]))
            objectives.append(values)
    return {
        "strategy": name,
        "seed": seed,
        "minutes": minutes,
        "candidates": len(study.get_trials(deepcopy=False)),
        "found": found,
        "objectives": objectives,
    }


def real_part(args: argparse.Namespace, task: TaskSpec) -> None:
    """``--real-strategies`` on SST-2 itself, each run appended to ``--real-log``; then the default
    against random for every seed the log holds both of at the same length: CPU time to within a point
    of the best accuracy either found, and the hypervolume of the fronts they measured."""
    seeds = range(args.real_first, args.real_first + args.real)
    print(
        f"\n3. real runs on SST-2: {', '.join(args.real_strategies)}, seeds {list(seeds)}, "
        f"{args.real_minutes} CPU minutes each (log: {args.real_log})",
        flush=True,
    )
    for seed in seeds:
        for name in args.real_strategies:
            record = real_run(name, seed, args.real_minutes, task)
            with args.real_log.open("a") as log:
                log.write(json.dumps(record) + "\n")
            print(
                f"   {name} seed {seed}: {record['candidates']} candidates, {len(record['found'])} tuned",
                flush=True,
            )
    compare_real(load_records(args.real_log), args.real_minutes, design_scale(load_records(args.design)))


def compare_real(records: list[dict], minutes: float, scale: Scale) -> None:
    """The default against random, per seed logged for both, over their first ``minutes`` of CPU time (a
    longer run holds the shorter one: the same seed draws the same trials), and the geometric mean; and
    the hypervolume of each run's front as measured (noisy figures, ``scale`` from the design)."""
    runs = {(r["strategy"], r["seed"]): r for r in records if r["minutes"] >= minutes}
    ratios = []
    for seed in sorted({seed for name, seed in runs if (DEFAULT, seed) in runs and ("random", seed) in runs}):
        logged = {name: runs[(name, seed)] for name in (DEFAULT, "random")}
        found = {name: [(t, a) for t, a in r["found"] if t <= minutes * 60] for name, r in logged.items()}
        if not any(found.values()):
            print(f"   seed {seed}: neither run finished a tuned trial within {minutes} CPU minutes")
            continue
        top = max(a for tuned in found.values() for _, a in tuned)
        times = {n: next((t for t, a in tuned if a >= top - 0.01), math.inf) for n, tuned in found.items()}
        ratios.append(times[DEFAULT] / times["random"])
        print(
            f"   seed {seed}: best accuracy {top:.4f}; CPU minutes to within a point: "
            + ", ".join(f"{n} {t / 60:.1f} ({len(found[n])} tuned)" for n, t in times.items())
            + f"; ratio {ratio_text(times[DEFAULT], times['random'])} (target <= 0.5)",
            flush=True,
        )
        volumes = {n: measured_front(r, minutes, scale) for n, r in logged.items()}
        if None not in volumes.values():
            print(
                "     hypervolume of the front as measured, from the baseline: "
                + ", ".join(f"{n} {v:.4f}" for n, v in volumes.items())
            )
    finite = [r for r in ratios if 0 < r < math.inf]  # a run that never got there has no ratio to average
    if len(finite) > 1:
        geometric = math.exp(statistics.mean(math.log(r) for r in finite))
        print(f"   geometric mean ratio {geometric:.2f} over {len(finite)} of {len(ratios)} seeds")


def ratio_text(default: float, random: float) -> str:
    """The default's time over random's, or which of them never got there."""
    if math.isinf(random):
        return "none: random search never got there" if not math.isinf(default) else "none: neither got there"
    return "none: the default never got there" if math.isinf(default) else f"{default / random:.2f}"


def measured_front(record: dict, minutes: float, scale: Scale) -> float | None:
    """The hypervolume of a logged real run's tuned trials within ``minutes`` (None: logged before the
    objectives were)."""
    if "objectives" not in record:
        return None
    timed = zip(record["found"], record["objectives"], strict=True)
    return hypervolume([tuple(values) for (t, _), values in timed if t <= minutes * 60], scale)


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
    parser.add_argument(
        "--startup-trials",
        type=int,
        default=samplers.STARTUP_TRIALS,
        help="Random trials before a model-based sampler starts modelling (default: the product's).",
    )
    parser.add_argument("--design", type=Path, default=DESIGN)
    parser.add_argument(
        "--reach-strategies",
        nargs="+",
        default=["random", DEFAULT],
        choices=list(STRATEGIES),
        help="Strategies whose runs go on to --reach-horizon, for the equivalents to 90%% of the best.",
    )
    parser.add_argument(
        "--reach-horizon", type=float, default=200.0, help="At least 50, the last budget of the table."
    )
    parser.add_argument("--real", type=int, default=0, help="Seeds of the real-run check (0: skip it).")
    parser.add_argument("--real-first", type=int, default=0, help="The first seed of the real-run check.")
    parser.add_argument("--real-minutes", type=float, default=45.0, help="CPU minutes per real run.")
    parser.add_argument(
        "--real-strategies",
        nargs="+",
        default=[DEFAULT, "random"],
        choices=list(STRATEGIES),
        help="Strategies of the real-run check (random's runs do not depend on the default's settings).",
    )
    parser.add_argument(
        "--real-log",
        type=Path,
        default=REAL_LOG,
        help="JSON lines each real run is appended to; the comparison reads every run logged there.",
    )
    parser.add_argument("--sst2", type=Path, default=default_sst2())
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    CAPS[0] = Caps(max_leakage=args.max_leakage)
    samplers.STARTUP_TRIALS = args.startup_trials  # read by make_sampler at every study
    task = sst2_task(args.sst2)
    if args.seeds:
        surrogate_part(args, TrialRunner(task, DEFAULT_MODEL, FIDELITY, MemoryReferences()))
    if args.real:
        real_part(args, task)


if __name__ == "__main__":
    main()
