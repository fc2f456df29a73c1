"""CLI commands that measure: the attack suite on an upload, and one whole trial of a setting."""

from __future__ import annotations

from pathlib import Path

import typer

from adaptive.cli import options
from adaptive.cli.common import JsonOption, emit, handle_errors, literal, progress_bar, warn
from adaptive.cli.flow import plaintext_ids, with_mechanism
from objectives.data import DataError
from objectives.device import resolve_device
from objectives.encoded import load_encoded
from objectives.leakage import Plaintext, attack_count, measure_leakage, public_knowledge
from objectives.models import DEFAULT_MODEL, load_as_saved, load_tokenizer
from objectives.repeated import Repeated
from objectives.task import LM, DataSource
from objectives.tokens import tokenize
from objectives.trial import TrialRunner, TrialSettings, baseline_note
from objectives.tuning import TuningBudget
from operators.errors import SettingsError
from operators.identity import input_embedding
from operators.keyfile import load_key
from operators.settings import PRESETS, preset


def attack(
    shaken_model: Path = typer.Option(..., "--shaken-model", help="The shaken model directory (uploaded)."),
    shaken_data: Path = typer.Option(..., "--shaken-data", help="The encoded training data (uploaded)."),
    truth_key: Path = typer.Option(..., "--truth-key", help="The key, used only to score the attacks."),
    public_model: str = typer.Option(DEFAULT_MODEL, "--public-model", help="The public pretrained model."),
    public_text: str | None = typer.Option(
        None,
        "--public-text",
        help="Public text for the frequency prior (disjoint from the private data): a file, optionally "
        "with a row range, e.g. dev.tsv[1000:].",
    ),
    private_data: str | None = typer.Option(
        None,
        "--private-data",
        help=literal(
            "The plaintext the upload was encoded from (a file, optionally with rows, read with the same "
            "columns and --max-length as encode): attacks are then scored per occurrence against what was "
            "written, on rare tokens too. Needed for a key that substitutes."
        ),
    ),
    text_column: str = options.TextColumn,
    label_column: str = options.LabelColumn,
    prompt_column: str | None = options.PromptColumn,
    no_header: bool = options.NoHeader,
    max_length: int = typer.Option(
        128, "--max-length", min=4, help="Tokens per example of public text (and of --private-data)."
    ),
    device: str = options.Device,
    as_json: bool = JsonOption,
) -> None:
    """Run the attack suite on what the cloud sees, and the informed attacks with the key's invertible
    operators undone; print each attack's recovery rate and both leakage figures."""
    where = resolve_device(device)
    key = load_key(truth_key)
    shaken = load_as_saved(str(shaken_model))
    for warning in key.check_shaken(shaken):
        warn(warning)
    upload = load_encoded(shaken_data)
    pretrained, tokenizer = load_as_saved(public_model), load_tokenizer(public_model)
    key.check_tokenizer(tokenizer)
    key = with_mechanism(key, public_model, tokenizer)
    plaintext = None
    if private_data is not None:
        kind = LM if upload.is_lm else "classification"
        written = plaintext_ids(
            tokenizer, private_data, kind, text_column, label_column, prompt_column, not no_header, max_length
        )
        if [len(s) for s in written] != [len(s) for s in upload.input_ids]:
            raise DataError(
                f"{private_data} does not match the upload token for token: read it with the columns and "
                "--max-length encode used"
            )
        plaintext = Plaintext(written)
    public_ids: list[list[int]] = []
    if public_text is None:
        warn(
            "no --public-text: attacks that need public text statistics are skipped, "
            "so leakage may be underestimated"
        )
    else:
        texts = DataSource.parse(public_text).load_texts(text_column, not no_header)
        public_ids = tokenize(tokenizer, texts, max_length)
    public = public_knowledge(pretrained, public_ids, tokenizer.all_special_ids)
    with progress_bar() as bar:
        rows = input_embedding(shaken).shape[0]
        total = attack_count(rows, public, substituted=key.substitutes, mixed=key.mixes)
        task = bar.add_task("attacking", total=total)
        advance = lambda name: bar.advance(task, 1)  # noqa: E731
        leakage = measure_leakage(
            shaken, upload.input_ids, public, key, advance, device=where, plaintext=plaintext
        )
    suite, informed = leakage.attacks, leakage.informed
    lines = [
        f"{name:22s} recovers {s.recovery:7.2%} ({s.seconds:.1f} s) {s.note}"
        for name, s in suite.scores.items()
    ]
    lines += [
        f"{'informed/' + name:22s} recovers {s.recovery:7.2%} ({s.seconds:.1f} s) {s.note}"
        for name, s in informed.scores.items()
    ]
    lines += [
        f"leakage bound (the key's invertible operators undone; {leakage.strongest_bound}): "
        f"{leakage.bound:.2%} of {suite.occurrences} tokens",
        f"best attack run on the upload as it is ({suite.strongest}): {suite.leakage:.2%} (a lower bound)",
    ]
    rare, exposure = leakage.bound_on("rare"), leakage.exposure
    if rare is not None and exposure is not None:
        lines.append(
            f"rare tokens (outside the 1,000 most frequent public ones): bound {rare:.2%} of "
            f"{exposure.occurrences['rare']}; {exposure.unchanged.all:.0%} of all tokens uploaded unchanged; "
            f"always naming the most common token scores {exposure.floor.all:.1%}"
        )
    if plaintext is None:
        lines.append(
            "(scored per shaken id from the key alone; give --private-data to score what was written)"
        )
    emit(leakage.to_dict(), as_json, lines)


def measure(
    settings: Path | None = typer.Option(None, "--settings", "-s", help="Settings JSON (shaking + tuning)."),
    preset_name: str | None = typer.Option(
        None, "--preset", help=f"Named shaking settings: {', '.join(PRESETS)}."
    ),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Pretrained model."),
    train: str = options.Train,
    eval_: str = options.Eval,
    public: str = options.Public,
    text_column: str = options.TextColumn,
    label_column: str = options.LabelColumn,
    task_kind: str = options.TaskKind,
    prompt_column: str | None = options.PromptColumn,
    no_header: bool = options.NoHeader,
    train_size: int = options.TrainSize,
    eval_size: int | None = options.EvalSize,
    max_length: int = options.MaxLength,
    attack_tuned: bool = options.AttackTuned,
    seed: int = typer.Option(0, "--seed", help="Seeds the trial key, the head, dropout and batch order."),
    repeats: int = typer.Option(
        1,
        "--repeats",
        min=1,
        max=20,
        help="Measure with this many seeds (--seed and the next ones): accuracies are averaged, leakage "
        "figures taken at the worst seed.",
    ),
    device: str = options.Device,
    as_json: bool = JsonOption,
) -> None:
    """Measure one setting end to end: accuracy after private tuning, cost, leakage by real attacks."""
    if (settings is None) == (preset_name is None):
        raise SettingsError("give exactly one of --settings FILE or --preset NAME")
    where = resolve_device(device)
    chosen = TrialSettings.load(settings) if settings else TrialSettings(preset(preset_name), TuningBudget())
    task = options.task_spec(
        train, eval_, public, text_column, label_column, not no_header, task_kind, prompt_column
    )
    fidelity = options.fidelity(train_size, eval_size, max_length, attack_tuned)
    runner = TrialRunner(task, model, fidelity, device=where)
    seeds = tuple(range(seed, seed + repeats))
    results = []
    with progress_bar() as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        for one in seeds:
            tasks.clear()
            results.append(runner.run(chosen, key_seed=one, tuning_seed=one, progress=progress))
    repeated = Repeated(seeds, tuple(results))
    emit(repeated.to_dict(), as_json, measure_lines(chosen, repeated))


def measure_lines(chosen: TrialSettings, repeated: Repeated) -> list[str]:
    """What ``measure`` prints for a human: accuracy (averaged over the seeds), then every leakage
    figure (the worst seed's), the sensitive ones first, the all-token figure in words beside them."""
    result, figure = repeated.results[0], repeated.figure
    accuracy, gap = figure("accuracy"), figure("accuracy_gap")
    over = (
        f" over {len(repeated.seeds)} seeds (+-{repeated.spread('accuracy'):.3f})"
        if len(repeated.seeds) > 1
        else ""
    )
    lines = [
        f"settings  {chosen.shaking.describe()} | tuning {chosen.describe_budget()}",
        f"accuracy  {accuracy:.4f}{over} (plaintext {figure('plaintext_accuracy'):.4f}, gap {gap:+.4f}"
        f"{baseline_note(accuracy, result.baseline_accuracy, result.evaluated)})",
    ]
    if figure("recovered_accuracy") is not None:
        lines.append(
            f"          the recovered model on plaintext: {figure('recovered_accuracy'):.4f} "
            f"(gap {figure('recovered_gap'):+.4f})"
        )
    if result.recovery is not None:
        run = result.recovery
        lines.append(
            f"recovery  {run.steps} steps, held-out loss {run.heldout_loss_before:.3f} -> "
            f"{run.heldout_loss_after:.3f}; accuracy without it {result.accuracy_without_recovery:.4f}"
        )
    worst = " (worst seed)" if len(repeated.seeds) > 1 else ""
    rare, secrets = figure("leakage_bound_rare"), figure("canary_recovery")
    if rare is not None:
        lines.append(
            f"leakage   rare tokens: bound {rare:.4f} ({result.strongest_rare_attack}); planted secrets: "
            f"{secrets:.4f} ({result.strongest_canary_attack}){worst}"
        )
    lines += [
        f"          all tokens: bound {figure('leakage_bound'):.4f} (informed; "
        f"{result.strongest_bound_attack}){worst}",
        f"          best attack {figure('leakage_attacks'):.4f} (lower bound; {result.strongest_attack})",
    ]
    if result.tokens_unchanged is not None and result.blind_floor is not None:
        lines.append(
            f"          {figure('tokens_unchanged'):.0%} of the private tokens are uploaded unchanged "
            "(readable once the permutation falls); always naming the most common token scores "
            f"{result.blind_floor:.1%}"
        )
    lines += [
        f"cost      {result.cost_gflops:,.0f} GFLOP (measured on {result.device})",
        "attacks   " + ", ".join(f"{k} {v:.3f}" for k, v in result.attacks.items()),
        "informed  " + ", ".join(f"{k} {v:.3f}" for k, v in result.bound_attacks.items()),
    ]
    return lines


def register(app: typer.Typer) -> None:
    for command in (attack, measure):
        app.command(command.__name__)(handle_errors(command))
