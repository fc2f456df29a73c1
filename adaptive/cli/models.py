"""CLI commands that make models: a small causal LM built from a config and pretrained on public text."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer

from adaptive.cli import options
from adaptive.cli.common import JsonOption, emit, handle_errors, progress_bar
from objectives.small_lm import ARCHITECTURES, SmallLMSpec, pretrain_small_lm
from objectives.task import DataSource
from operators.errors import SettingsError


def small_lm(
    out: Path = typer.Option(..., "--out", help="Directory to write the model and tokenizer to."),
    public: str = options.Public,
    text_column: str = options.TextColumn,
    no_header: bool = options.NoHeader,
    architecture: str = typer.Option("llama", "--architecture", help=f"One of {', '.join(ARCHITECTURES)}."),
    hidden: int = typer.Option(64, "--hidden", min=8, help="Hidden size."),
    layers: int = typer.Option(2, "--layers", min=1, help="Transformer layers."),
    steps: int = typer.Option(300, "--steps", min=0, help="Pretraining steps on the public text."),
    max_length: int = typer.Option(32, "--max-length", min=4, help="Tokens per pretraining example."),
    seed: int = typer.Option(0, "--seed", help="Seeds the weights and the batch order."),
    force: bool = typer.Option(False, "--force", help="Overwrite a non-empty --out directory."),
    as_json: bool = JsonOption,
) -> None:
    """Build a small Llama- or GPT-2-architecture causal LM with the bundled tokenizer and pretrain it
    briefly on public text; point --model at the directory (offline stand-in for a hub model)."""
    if out.exists() and any(out.iterdir()) and not force:
        raise SettingsError(f"{out} is not empty; give --force to overwrite it")
    spec = SmallLMSpec(architecture, hidden, layers, max(1, hidden // 32), max_length, steps, seed=seed)
    texts = DataSource.parse(public).load_texts(text_column, not no_header)
    with progress_bar() as bar:
        task = bar.add_task("pretraining", total=steps)
        report = pretrain_small_lm(spec, texts, out, advance=lambda n: bar.advance(task, n))
    emit(
        {"out": str(out), "spec": asdict(spec), "report": asdict(report)},
        as_json,
        [
            f"model     {out} ({architecture}, hidden {hidden}, {layers} layers, {len(texts)} public texts)",
            f"pretrain  {report.steps} steps in {report.seconds:.0f} s: held-out next-token accuracy "
            f"{report.heldout_accuracy_before:.3f} -> {report.heldout_accuracy_after:.3f} (most common token "
            f"alone {report.unigram_accuracy:.3f})",
        ],
    )


def register(app: typer.Typer) -> None:
    app.command("small-lm")(handle_errors(small_lm))
