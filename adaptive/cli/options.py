"""Options shared by commands that run trials: the task's data sources, the fidelity, the device."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from adaptive.cli.common import literal
from objectives.task import DataSource, TaskSpec
from objectives.trial import Fidelity

SST2 = Path(os.environ.get("SHAKETUNE_SST2", "../shared/data/sst2"))

Train = typer.Option(
    str(SST2 / "train.tsv"),
    "--train",
    help=literal("Private training data: a file or hf:DATASET[:CONFIG]:SPLIT, then optionally [start:stop]."),
)
Eval = typer.Option(str(SST2 / "dev.tsv[0:1000]"), "--eval", help="Evaluation data for private inference.")
Public = typer.Option(
    str(SST2 / "dev.tsv[1000:]"), "--public", help="The attacker's public text (disjoint from --train)."
)
TextColumn = typer.Option(
    "sentence", "--text-column", help="Column holding the text: a name, or a position (0 is the first)."
)
LabelColumn = typer.Option(
    "label", "--label-column", help="Column holding the label: a name, or a position (0 is the first)."
)
TaskKind = typer.Option(
    "classification",
    "--task-kind",
    help="classification (text and label per row) or lm (a causal LM tuned on each row's text with "
    "next-token loss; accuracy is held-out next-token accuracy by private inference).",
)
PromptColumn = typer.Option(
    None, "--prompt-column", help="lm only: a prompt column; the loss then covers --text-column only."
)
NoHeader = typer.Option(
    False,
    "--no-header",
    help="The csv/tsv files have no header line (their first line is data): give columns by position.",
)
TrainSize = typer.Option(2000, "--train-size", min=1, help="Fidelity: training examples per trial.")
EvalSize = typer.Option(None, "--eval-size", min=1, help="Fidelity: evaluation examples (default all).")
MaxLength = typer.Option(64, "--max-length", min=4, help="Fidelity: tokens per example.")
AttackTuned = typer.Option(False, "--attack-tuned", help="Also attack the embedding after tuning.")
Device = typer.Option(
    "auto",
    "--device",
    envvar="SHAKETUNE_DEVICE",
    help="Where models train, infer and are attacked: auto (cuda, else mps, else cpu), cpu, cuda, cuda:N "
    "or mps. CUDA GPUs with bf16 train and infer under bf16 autocast; keys always stay on the CPU.",
)


def default_task() -> TaskSpec:
    """SST-2 beside the project: train.tsv private, dev.tsv split into evaluation and public text."""
    return task_spec(Train.default, Eval.default, Public.default, "sentence", "label")


def task_spec(
    train: str,
    eval_: str,
    public: str,
    text_column: str,
    label_column: str,
    header: bool = True,
    kind: str = "classification",
    prompt_column: str | None = None,
) -> TaskSpec:
    return TaskSpec(
        DataSource.parse(train),
        DataSource.parse(eval_),
        DataSource.parse(public),
        text_column,
        label_column,
        header,
        kind,
        prompt_column,
    )


def fidelity(train_size: int, eval_size: int | None, max_length: int, attack_tuned: bool) -> Fidelity:
    return Fidelity(train_size, eval_size, max_length, attack_tuned)
