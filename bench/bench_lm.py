"""Benchmark: private fine-tuning of a causal language model, full tuning against LoRA.

On a small Llama-architecture model (built and pretrained on public SST-2 dev text by ``shaketune
small-lm`` unless ``--model`` names one), the private data is SST-2 training sentences as documents; held-out
next-token accuracy is measured by private inference on SST-2 test. Settings: horizontal only (the
permutation; private accuracy must equal plaintext), a noisy vertical setting, a homophonic setting, and
the noisy setting with recovery training (which LoRA, whose frozen rows stay as uploaded, depends on), each
tuned in full and with LoRA. Every row prints next-token accuracy, the gap to plaintext tuning at the same
budget, perplexity, both leakage figures, FLOPs and seconds, with ratios to the plaintext reference;
rows are appended to ``--out`` (JSON lines).

    .venv/bin/python bench/bench_lm.py [--device cuda] [--model DIR] [--rows 1,2] [--out lm.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from objectives.device import describe_device, resolve_device  # noqa: E402
from objectives.recovery_training import RecoveryBudget  # noqa: E402
from objectives.small_lm import SmallLMSpec, built_with, pretrain_small_lm  # noqa: E402
from objectives.task import DataSource, TaskSpec  # noqa: E402
from objectives.trial import Fidelity, MemoryReferences, TrialRunner, TrialSettings  # noqa: E402
from objectives.tuning import TuningBudget  # noqa: E402
from operators.settings import HomophoneSettings, OperatorSettings, ShakeSettings, preset  # noqa: E402

SMALL_LM = SmallLMSpec("llama", hidden=64, layers=2, heads=2, max_length=32, steps=600, batch_size=16)
BUDGETS = {
    "full": TuningBudget(steps=200, batch_size=16, learning_rate=5e-4, mode="full"),
    "lora": TuningBudget(
        steps=200, batch_size=16, learning_rate=2e-3, mode="lora", lora_rank=8, lora_alpha=16
    ),
}
NOISE = (OperatorSettings("gaussian", 1.0, 1.0),)


@dataclass(frozen=True)
class Setting:
    label: str
    shaking: ShakeSettings
    recovery: RecoveryBudget = RecoveryBudget()


SETTINGS = [
    Setting("horizontal only", ShakeSettings(1.0, ())),
    Setting("gaussian 1 (1:1)", ShakeSettings(1.0, NOISE)),
    Setting("flat 0.005/0 + gaussian 1", ShakeSettings(1.0, NOISE, HomophoneSettings(0.005, 0.0))),
    Setting(
        "gaussian 1, recovery 300 (lm)",
        ShakeSettings(1.0, NOISE),
        RecoveryBudget(300, 16, 1e-3, part="all", objective="lm"),
    ),
    Setting("rare-tokens (substitution)", preset("rare-tokens")),  # target (iii): sensitive figures
    Setting("rare-tokens-masked (substitution)", preset("rare-tokens-masked")),
]


def cell(value: float | None) -> str:
    return f"{value:6.3f}" if value is not None else f"{'-':>6s}"


def small_model(directory: Path, sst2: Path) -> Path:
    """The benchmark's small causal LM, built once (pretraining on public text takes a few minutes)."""
    if built_with(directory) is None:
        texts = DataSource(str(sst2 / "dev.tsv"), 1000, None).load_texts()
        report = pretrain_small_lm(SMALL_LM, texts, directory)
        print(f"built {directory}: {report}", flush=True)
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sst2", type=Path, default=Path("../shared/data/sst2"))
    parser.add_argument("--model", default=None, help="A causal LM directory or hub id (default: build one)")
    parser.add_argument("--cache", type=Path, default=Path("bench/.small-llama"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--rows", default=None, help="1-based setting numbers, e.g. 1,3")
    parser.add_argument("--modes", default="full,lora")
    parser.add_argument("--out", type=Path, default=Path("bench_lm.jsonl"))
    args = parser.parse_args()
    device = resolve_device(args.device)
    model = args.model or str(small_model(args.cache, args.sst2))
    task = TaskSpec(
        DataSource(str(args.sst2 / "train.tsv")),
        DataSource(str(args.sst2 / "test.tsv")),
        DataSource(str(args.sst2 / "dev.tsv"), 1000, None),
        kind="lm",
    )
    runner = TrialRunner(
        task, model, Fidelity(args.train_size, None, 32, compare_recovery=False), MemoryReferences(), device
    )
    chosen = [SETTINGS[int(i) - 1] for i in args.rows.split(",")] if args.rows else SETTINGS
    print(
        f"model {model} on {describe_device(device)}; {args.train_size} private documents, next-token "
        f"accuracy on SST-2 test; most common token alone: {runner.data.baseline_accuracy:.3f}",
        flush=True,
    )
    header = (
        f"{'setting':32s} {'mode':5s} {'acc':>6s} {'plain':>6s} {'gap':>7s} {'ppl':>7s} {'plain':>7s} "
        f"{'bound':>6s} {'attacks':>7s} {'rare':>6s} {'secret':>6s} {'recov':>6s} {'GFLOP':>7s} "
        f"{'xplain':>6s} {'s':>6s} {'xplain':>6s}"
    )
    print(header, flush=True)
    plain_seconds: dict[str, float] = {}
    for setting in chosen:
        for mode in args.modes.split(","):
            settings = TrialSettings(setting.shaking, BUDGETS[mode], setting.recovery)
            if mode not in plain_seconds:  # the plaintext reference, measured once per budget: its own time
                plain_started = time.perf_counter()
                runner.plaintext_score(settings.tuning, 0)
                plain_seconds[mode] = time.perf_counter() - plain_started
            started = time.perf_counter()
            result = runner.run(settings)
            seconds = time.perf_counter() - started
            plain = runner.flops(TrialSettings(ShakeSettings(1.0, ()), settings.tuning), 0)
            plain_flops = plain["tuning"] + plain["inference"]  # plaintext tuning and inference
            ratio = result.cost_gflops * 1e9 / plain_flops
            print(
                f"{setting.label:32s} {mode:5s} {result.accuracy:6.3f} {result.plaintext_accuracy:6.3f} "
                f"{result.accuracy_gap:+7.3f} {result.perplexity:7.1f} {result.plaintext_perplexity:7.1f} "
                f"{result.leakage_bound:6.3f} {result.leakage_attacks:7.3f} "
                f"{cell(result.leakage_bound_rare)} {cell(result.canary_recovery)} "
                f"{cell(result.recovered_accuracy)} {result.cost_gflops:7.1f} "
                f"{ratio:6.2f} {seconds:6.1f} {seconds / plain_seconds[mode]:6.2f}",
                flush=True,
            )
            record = {
                "setting": setting.label,
                "mode": mode,
                "plaintext_seconds": plain_seconds[mode],
                "wall_seconds": seconds,
                "device": describe_device(device),
                **result.to_dict(),
            }
            with args.out.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
    print(
        "gap: plaintext tuning minus private tuning at the same budget (next-token accuracy); bound: the "
        "informed-adversary figure, attacks: the suite's best run (a lower bound); rare, secret: the bound "
        "on rare tokens and planted secrets; recov: the recovered model on plaintext (substituting keys); "
        "xplain: the trial's cost over plaintext tuning + inference (FLOPs) and over the plaintext "
        "reference's seconds",
        flush=True,
    )


if __name__ == "__main__":
    main()
