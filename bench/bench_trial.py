"""Benchmark: the objective on SST-2 with the default model.

1. The attack suite over a 5,000-sentence private slice (target: under 60 s), for a setting the first
   attacks break and for one that makes the map-estimating attacks try every start (their slowest
   case); beside it, the informed attacks that give the bound (the key's invertible operators undone).
2. One trial at the default fidelity broken into its parts, beside the plaintext reference it is
   compared with (target: under 90 s on 2 cores, the reference excluded since it is cached).
3. Accuracy gap, leakage and cost for 5 hand-picked settings from weak to strong shaking, evaluated on
   SST-2 test (872 sentences; the search itself uses dev).

    .venv/bin/python bench/bench_trial.py [--sst2 ../shared/data/sst2] [--skip-table]
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from objectives.data import read_labelled_text, read_texts  # noqa: E402
from objectives.encoded import encode_token_ids  # noqa: E402
from objectives.leakage import measure_leakage, public_knowledge  # noqa: E402
from objectives.models import DEFAULT_MODEL, load_as_saved, load_tokenizer  # noqa: E402
from objectives.task import DataSource, TaskSpec  # noqa: E402
from objectives.tokens import tokenize  # noqa: E402
from objectives.trial import Fidelity, TrialRunner, TrialSettings  # noqa: E402
from objectives.tuning import TuningBudget  # noqa: E402
from operators.implant import shake_model  # noqa: E402
from operators.key import generate_key  # noqa: E402
from operators.settings import OperatorSettings, ShakeSettings, preset  # noqa: E402


def chain(*ops: tuple[str, float, float]) -> ShakeSettings:
    return ShakeSettings(1.0, tuple(OperatorSettings(*op) for op in ops))


SETTINGS = {
    "horizontal-only": preset("horizontal-only"),
    "gaussian 0.5": chain(("gaussian", 0.5, 1.0)),
    "medium (tilt 1@0.5, gaussian 1)": preset("medium"),
    "tilt 1.5, gaussian 1.5": chain(("tilt", 1.5, 1.0), ("gaussian", 1.5, 1.0)),
    "tilt-inflate-noise (tilt 1.5, inflate 0.5, gaussian 2)": preset("tilt-inflate-noise"),
}


def attack_timing(sst2: Path) -> None:
    model, tokenizer = load_as_saved(DEFAULT_MODEL), load_tokenizer(DEFAULT_MODEL)
    private = tokenize(tokenizer, read_labelled_text(sst2 / "train.tsv").texts[:5000], 64)
    public = public_knowledge(
        model, tokenize(tokenizer, read_texts(sst2 / "dev.tsv"), 64), tokenizer.all_special_ids
    )
    print(f"1. attack suite, {len(private)} private sentences ({sum(map(len, private)):,} tokens)")
    timed = {
        "medium (tilt 1@0.5, gaussian 1)": SETTINGS["medium (tilt 1@0.5, gaussian 1)"],
        "tilt-inflate-noise (tilt 1.5, inflate 0.5, gaussian 2)": SETTINGS[
            "tilt-inflate-noise (tilt 1.5, inflate 0.5, gaussian 2)"
        ],
        "flattened-tilt-noise (homophonic: every attack twice)": preset("flattened-tilt-noise"),
    }
    for name, shaking in timed.items():
        key = generate_key(shaking, model, tokenizer, DEFAULT_MODEL, seed=bytes(32), prior=public.prior)
        shaken = shake_model(copy.deepcopy(model), key)
        leakage = measure_leakage(shaken, encode_token_ids(key, private), public, key)
        suite, informed = leakage.attacks, leakage.informed
        verdict = "meets" if suite.seconds < 60 else "MISSES"
        print(f"   {name}: suite {suite.seconds:.1f} s ({verdict} < 60 s, {suite.seconds / 60:.2f} of it)")
        for label, report in (("suite", suite), ("informed", informed)):
            parts = ", ".join(f"{a} {s.recovery:.3f} in {s.seconds:.1f} s" for a, s in report.scores.items())
            print(f"      {label}: {parts}")
        print(
            f"      bound {leakage.bound:.3f} vs best attack run {suite.leakage:.3f}; informed attacks "
            f"{informed.seconds:.1f} s = {informed.seconds / suite.seconds:.2f}x the suite's time"
        )


def trial_breakdown(task: TaskSpec) -> TrialRunner:
    runner = TrialRunner(task, DEFAULT_MODEL, Fidelity())
    settings = TrialSettings(preset("medium"), TuningBudget())
    print(f"\n2. one trial at the default fidelity {Fidelity()}, tuning {TuningBudget()}")
    started = time.perf_counter()
    plaintext = runner.plaintext_accuracy(settings.tuning, 0)
    reference = time.perf_counter() - started
    started = time.perf_counter()
    result = runner.run(settings)
    total = time.perf_counter() - started
    print(f"   {'stage':22s} {'wall s':>8s} {'cpu s':>8s} {'share':>7s}")
    for stage, t in result.seconds.items():
        print(f"   {stage:22s} {t.wall:8.1f} {t.cpu:8.1f} {t.wall / total:7.1%}")
    print(f"   {'trial total':22s} {total:8.1f}")
    print(f"   {'plaintext reference':22s} {reference:8.1f}           (tuning + inference without shaking)")
    print(f"   trial / plaintext reference: {total / reference:.2f}x")
    verdict = "meets" if total < 90 else "MISSES"
    print(f"   target < 90 s: {verdict} ({total / 90:.2f} of the budget)")
    print(f"   peak memory {result.peak_memory_mb:.0f} MB")
    print(
        f"   accuracy {result.accuracy:.4f} vs plaintext {plaintext:.4f}; leakage bound "
        f"{result.leakage_bound:.4f}, best attack run {result.leakage_attacks:.4f}"
    )
    return runner


def settings_table(task: TaskSpec) -> None:
    runner = TrialRunner(task, DEFAULT_MODEL, Fidelity())
    print(f"\n3. five settings, weak to strong (eval: {task.eval}, budget {TuningBudget()})")
    columns = ("acc", "gap", "bound", "suite", "freq", "near", "relat", "GFLOP")
    print(f"   {'setting':44s} " + " ".join(f"{c:>6s}" for c in columns))
    for name, shaking in SETTINGS.items():
        result = runner.run(TrialSettings(shaking, TuningBudget()))
        a = result.attacks
        print(
            f"   {name:44s} {result.accuracy:6.3f} {result.accuracy_gap:+6.3f} {result.leakage_bound:6.3f} "
            f"{result.leakage_attacks:6.3f} {a['shaken/frequency']:6.3f} {a['shaken/nearest']:6.3f} "
            f"{a['shaken/relational']:6.3f} "
            f"{result.cost_gflops:6.0f}",
            flush=True,
        )
    print(f"   plaintext accuracy at this budget: {runner.plaintext_accuracy(TuningBudget(), 0):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sst2", type=Path, default=Path(os.environ.get("SHAKETUNE_SST2", "../shared/data/sst2"))
    )
    parser.add_argument("--skip-table", action="store_true", help="only parts 1 and 2")
    args = parser.parse_args()
    attack_timing(args.sst2)
    trial_breakdown(TaskSpec.sst2(args.sst2))
    if not args.skip_table:
        test_task = TaskSpec(
            DataSource(str(args.sst2 / "train.tsv")),
            DataSource(str(args.sst2 / "test.tsv")),
            DataSource(str(args.sst2 / "dev.tsv")),
        )
        settings_table(test_task)


if __name__ == "__main__":
    main()
