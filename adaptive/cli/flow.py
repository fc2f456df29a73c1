"""CLI commands of the CypherTalk flow: keygen, shake, encode, tune (the cloud's part), recover, evaluate,
generate."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import typer

from adaptive.cli import options
from adaptive.cli.common import JsonOption, emit, handle_errors, literal, progress_bar, warn
from objectives.attacks.view import token_counts
from objectives.data import DataError, label_ids
from objectives.device import autocast, resolve_device
from objectives.encoded import EncodedData, encode_token_ids, load_encoded, save_encoded
from objectives.evaluation import evaluate_accuracy, label_indices
from objectives.lora import AUTO_TARGETS
from objectives.models import (
    DEFAULT_MODEL,
    load_as_saved,
    load_classifier,
    load_tokenizer,
)
from objectives.next_token import evaluate_next_token, fine_tune_lm, lm_pad_id, targets_of, tokenize_documents
from objectives.recovery_training import RECOVERY_PARTS, RecoveryBudget, recovery_train_shaken
from objectives.task import LM, TASK_KINDS, DataSource
from objectives.tokens import DEFAULT_MAX_LENGTH, tokenize
from objectives.trial import TrialSettings
from objectives.tuning import TUNING_MODES, TuningBudget, fine_tune
from operators.atomic import directory_atomic
from operators.errors import KeyMismatchError, SettingsError, ShaketuneError, UnsupportedModelError
from operators.generation import MAX_NEW_TOKENS, check_language_model, check_max_new_tokens, private_generate
from operators.horizontal import check_copy_mass
from operators.identity import input_embedding, vocabulary_tokens
from operators.implant import shake_model
from operators.key import ShakeKey, generate_key, marker
from operators.keyfile import load_key, save_key
from operators.recovery import recover_model
from operators.settings import PRESETS, ShakeSettings, preset

ModelOption = typer.Option(
    DEFAULT_MODEL, "--model", "-m", help="Local model directory or hub name (default: bundled MiniLM)."
)
KeyOption = typer.Option(..., "--key", "-k", help="Key file written by 'shaketune keygen'.")
TextColumn = options.TextColumn
LabelColumn = options.LabelColumn
NoHeader = options.NoHeader
MaxLength = typer.Option(DEFAULT_MAX_LENGTH, "--max-length", min=2, help="Tokens per example.")
TaskKind = options.TaskKind
PromptColumn = options.PromptColumn
Pretrained = typer.Option(
    None,
    "--pretrained",
    help="A key that substitutes tokens reads the public pretrained model's embedding: that model's "
    "directory or hub name (default: the model the key was made for).",
)
LORA_DEFAULTS = TuningBudget()
LoraRank = typer.Option(
    LORA_DEFAULTS.lora_rank, "--lora-rank", help="--mode lora: the adapters' rank (1 to 1024)."
)
LoraAlpha = typer.Option(
    LORA_DEFAULTS.lora_alpha, "--lora-alpha", help="--mode lora: the adapters' scale is alpha / rank."
)
LoraTargets = typer.Option(
    AUTO_TARGETS,
    "--lora-targets",
    help="--mode lora: comma-separated module names the adapters attach to (e.g. q_proj,v_proj), or "
    "auto: peft's default for the architecture.",
)


def keygen(
    out: Path = typer.Option(..., "--out", "-o", help="Key file to create (never overwritten)."),
    model: str = ModelOption,
    settings: Path | None = typer.Option(
        None,
        "--settings",
        "-s",
        help="Settings JSON file (a 'tuning' section, as select writes, is ignored).",
    ),
    preset_name: str | None = typer.Option(
        None, "--preset", help=f"Named settings instead of a file: {', '.join(PRESETS)}."
    ),
    public_text: str | None = typer.Option(
        None,
        "--public-text",
        help=literal(
            "Public text (a file, optionally with rows, e.g. dev.tsv[1000:]) whose token frequencies "
            "size each token's copies; needed by homophone settings."
        ),
    ),
    text_column: str = TextColumn,
    no_header: bool = NoHeader,
    max_length: int = MaxLength,
    as_json: bool = JsonOption,
) -> None:
    """Generate a secret key for MODEL from settings (a file or a preset); written with mode 0600."""
    if (settings is None) == (preset_name is None):
        raise SettingsError("give exactly one of --settings FILE or --preset NAME")
    chosen = TrialSettings.load(settings).shaking if settings else preset(preset_name)
    tokenizer = load_tokenizer(model)
    loaded = load_as_saved(model)
    if marker(loaded) is not None:
        raise KeyMismatchError("keys are made for a plaintext pretrained model, not a shaken one")
    prior = None
    if public_text is not None:
        ids = tokenize(
            tokenizer, DataSource.parse(public_text).load_texts(text_column, not no_header), max_length
        )
        prior = token_counts(ids, input_embedding(loaded).shape[0])
    elif needs_public_text(chosen):
        raise SettingsError(
            "homophone settings (to size each token's copies) and substitution that keeps the most "
            "frequent tokens (to know which they are) need --public-text"
        )
    key = generate_key(chosen, loaded, tokenizer, model, prior=prior)
    save_key(key, out)
    summary = key.public_summary()
    homophones = (
        [
            f"homophones: {key.shaken_vocab_size - key.model.vocab_size} added ids for "
            f"{len(key.copies)} frequent tokens (shaken embedding {key.shaken_vocab_size} rows)"
        ]
        if key.homophonic
        else []
    )
    emit(
        {
            "key": str(out),
            **summary,
            "moved_ids": key.permutation.moved,
            "shaken_rows": key.shaken_vocab_size,
        },
        as_json,
        [
            f"wrote key {out} (fingerprint {key.fingerprint}, mode 0600)",
            f"settings: {chosen.describe()}",
            f"permutation moves {key.permutation.moved} of {key.model.vocab_size} ids",
            *homophones,
            "keep this file secret and backed up: without it the tuned model cannot be recovered",
        ],
    )


def shake(
    key_path: Path = KeyOption,
    out: Path = typer.Option(..., "--out", "-o", help="Directory for the shaken model (new or empty)."),
    model: str = ModelOption,
    public: str | None = typer.Option(
        None,
        "--recovery-data",
        help=literal(
            "Public text for recovery training (file or hf:DATASET[:CONFIG]:SPLIT, optional [a:b])."
        ),
    ),
    recovery_steps: int = typer.Option(
        0, "--recovery-steps", min=0, help="Recovery-training steps (0: none)."
    ),
    recovery_part: str = typer.Option(
        "all", "--recovery-part", help=f"What trains: {', '.join(RECOVERY_PARTS)}."
    ),
    recovery_lr: float = typer.Option(1e-4, "--recovery-learning-rate", min=0.0),
    recovery_objective: str = typer.Option(
        "distill",
        "--recovery-objective",
        help="distill (match the plaintext body) or lm (masked/next-token).",
    ),
    text_column: str = TextColumn,
    no_header: bool = NoHeader,
    max_length: int = MaxLength,
    seed: int = typer.Option(0, "--seed", help="Seeds recovery training's masks, dropout and batch order."),
    device: str = options.Device,
    as_json: bool = JsonOption,
) -> None:
    """Write the shaken model (save_pretrained format): what would be uploaded to the cloud.

    With --recovery-steps, the shaken model is first recovery-trained on public text (here, on the
    owner's side: the public text is encoded with the key and must not reach the cloud).
    """
    budget = RecoveryBudget(
        recovery_steps, learning_rate=recovery_lr, part=recovery_part, objective=recovery_objective
    )
    if budget.enabled and public is None:
        raise SettingsError("--recovery-steps needs --recovery-data (public text to train on)")
    where = resolve_device(device)  # recovery training only: implantation always runs on the CPU
    key = load_key(key_path)
    tokenizer = load_tokenizer(model)
    key.check_tokenizer(tokenizer)
    loaded = load_as_saved(model)
    started = time.perf_counter()
    shake_model(loaded, key)
    seconds = time.perf_counter() - started
    report: dict[str, Any] = {}
    if budget.enabled:
        texts = DataSource.parse(public).load_texts(text_column, not no_header)
        with progress_bar() as bar:
            task = bar.add_task("recovery training", total=budget.steps)
            run = recovery_train_shaken(
                loaded,
                key,
                model,
                tokenizer,
                tokenize(tokenizer, texts, max_length),
                budget,
                seed,
                advance=lambda n: bar.advance(task, n),
                device=where,
            )
        report["recovery"] = run.to_dict()
    with directory_atomic(out) as tmp:
        loaded.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    lines = [f"wrote shaken model to {out} (key {key.fingerprint}, implanted in {seconds:.2f} s)"]
    if budget.enabled:
        lines.append(
            f"recovery training: {run.steps} steps, held-out loss {run.heldout_loss_before:.3f} -> "
            f"{run.heldout_loss_after:.3f}"
        )
    emit(
        {"out": str(out), "key_fingerprint": key.fingerprint, "implant_seconds": round(seconds, 4), **report},
        as_json,
        lines,
    )


def encode(
    key_path: Path = KeyOption,
    data: str = typer.Option(
        ...,
        "--data",
        "-d",
        help=literal(
            "csv/tsv/json/jsonl/parquet with text and labels (lm: documents or prompts and responses), "
            "optionally with a row range: FILE[a:b]."
        ),
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="JSON-lines file of shaken ids and labels (lm: and loss_from)."
    ),
    model: str = ModelOption,
    task_kind: str = TaskKind,
    text_column: str = TextColumn,
    label_column: str = LabelColumn,
    prompt_column: str | None = PromptColumn,
    no_header: bool = NoHeader,
    max_length: int = MaxLength,
    as_json: bool = JsonOption,
) -> None:
    """Tokenise DATA and map its token ids with the key: the training data that would be uploaded.

    With --task-kind lm, DATA is documents (--text-column) or prompt/response pairs (--prompt-column
    and --text-column); each line of the upload then holds the shaken ids and where the next-token
    loss starts (loss_from) instead of a label.
    """
    _check_task(task_kind, prompt_column)
    key = load_key(key_path)
    tokenizer = load_tokenizer(model)
    key.check_tokenizer(tokenizer)
    key = with_mechanism(key, model, tokenizer)
    report: dict[str, Any] = {}
    token_ids, given = read_plaintext(
        tokenizer, data, task_kind, text_column, label_column, prompt_column, not no_header, max_length
    )
    if task_kind == LM:
        encoded = EncodedData(encode_token_ids(key, token_ids), loss_from=given)
        report["targets"] = len(targets_of(token_ids, given))
    else:
        encoded = EncodedData(encode_token_ids(key, token_ids), given)
    save_encoded(out, encoded)
    tokens = sum(len(seq) for seq in token_ids)
    emit(
        {
            "out": str(out),
            "examples": len(encoded),
            "tokens": tokens,
            **report,
            "task_kind": task_kind,
            "key_fingerprint": key.fingerprint,
        },
        as_json,
        [f"wrote {len(encoded)} encoded examples ({tokens} tokens) to {out}"],
    )


def read_plaintext(
    tokenizer: Any,
    data: str,
    task_kind: str,
    text_column: str,
    label_column: str,
    prompt_column: str | None,
    header: bool,
    max_length: int,
) -> tuple[list[list[int]], list[Any]]:
    """The token ids of a data file as ``encode`` reads it, and per example its label (classification)
    or where its next-token loss starts (lm)."""
    source = DataSource.parse(data)
    if task_kind == LM:
        pairs = source.load_documents(text_column, prompt_column, header)
        return tokenize_documents(tokenizer, pairs, max_length)
    table = source.load(text_column, label_column, header)
    return tokenize(tokenizer, table.texts, max_length), list(table.labels)


def plaintext_ids(tokenizer: Any, data: str, task_kind: str, *columns: Any) -> list[list[int]]:
    """The token ids alone of :func:`read_plaintext`."""
    return read_plaintext(tokenizer, data, task_kind, *columns)[0]


def needs_public_text(shaking: ShakeSettings) -> bool:
    """Whether making a key for ``shaking`` reads public text's token frequencies."""
    return shaking.homophones.enabled or (shaking.substitute.enabled and shaking.substitute.keep_top > 0)


def with_mechanism(key: ShakeKey, pretrained: str | None, tokenizer: Any) -> ShakeKey:
    """``key`` with its substitution mechanism attached, from the public pretrained model's embedding
    (``pretrained``, default the model the key was made for); a key that substitutes nothing as it is."""
    if not key.substitutes:
        return key
    name = pretrained or key.model.name
    rows = input_embedding(load_as_saved(name)).detach()
    try:
        return key.with_mechanism(rows, vocabulary_tokens(tokenizer, int(rows.shape[0])))
    except KeyMismatchError as exc:
        raise KeyMismatchError(f"{exc}; give the model the key was made for with --pretrained") from None


def _check_task(task_kind: str, prompt_column: str | None) -> None:
    """Refuse an unknown task kind, and a prompt column outside language-model tasks."""
    if task_kind not in TASK_KINDS:
        raise SettingsError(f"--task-kind must be one of {', '.join(TASK_KINDS)}, got {task_kind!r}")
    if prompt_column is not None and task_kind != LM:
        raise SettingsError("--prompt-column belongs to --task-kind lm")


def _causal_lm(model: str) -> Any:
    """The causal LM in ``model``, in the class it was saved as (so every weight is kept); a model that
    cannot predict the next token is refused."""
    loaded = load_as_saved(model)
    try:
        check_language_model(loaded)
    except UnsupportedModelError:
        raise UnsupportedModelError(
            f"{model} is not a causal language model saved with its head ({type(loaded).__name__}): "
            "--task-kind lm needs a decoder such as GPT-2, Llama or Qwen (build a small one with "
            "`shaketune small-lm`)"
        ) from None
    return loaded


def recover(
    model: Path = typer.Option(..., "--model", "-m", help="The tuned shaken model directory."),
    key_path: Path = KeyOption,
    out: Path = typer.Option(..., "--out", "-o", help="Directory for the recovered model (new or empty)."),
    as_json: bool = JsonOption,
) -> None:
    """Turn a tuned shaken model into one that reads plaintext token ids."""
    key = load_key(key_path)
    loaded = load_as_saved(str(model))
    warnings = recover_model(loaded, key)
    for warning in warnings:
        warn(warning)
    tokenizer = _tokenizer_for(str(model))
    if tokenizer is not None:
        key.check_tokenizer(tokenizer)
    with directory_atomic(out) as tmp:
        loaded.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    emit(
        {"out": str(out), "key_fingerprint": key.fingerprint, "warnings": warnings},
        as_json,
        [f"wrote recovered model to {out} (key {key.fingerprint})"],
    )


def _tokenizer_for(model_dir: str) -> Any | None:
    """The tokenizer saved beside a model, if any."""
    try:
        return load_tokenizer(model_dir)
    except ShaketuneError:
        return None


def evaluate(
    model: str = typer.Option(
        ..., "--model", "-m", help="Fine-tuned classifier directory (with --task-kind lm: a causal LM)."
    ),
    data: str = typer.Option(
        ...,
        "--data",
        "-d",
        help=literal(
            "Labelled text file (lm: documents or prompts and responses), optionally with a row range: "
            "FILE[a:b]."
        ),
    ),
    key_path: Path | None = typer.Option(
        None, "--key", "-k", help="Run private inference: encode with this key, run the shaken model."
    ),
    pretrained: str | None = Pretrained,
    task_kind: str = TaskKind,
    tokenizer_name: str | None = typer.Option(
        None, "--tokenizer", help="Tokenizer if the model directory has none (default: bundled MiniLM)."
    ),
    text_column: str = TextColumn,
    label_column: str = LabelColumn,
    prompt_column: str | None = PromptColumn,
    no_header: bool = NoHeader,
    max_length: int = MaxLength,
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    device: str = options.Device,
    as_json: bool = JsonOption,
) -> None:
    """Accuracy of a fine-tuned classifier on labelled DATA (private inference with --key).

    With --task-kind lm: next-token accuracy (greedy) and perplexity of a causal LM on the documents (or
    the responses) of DATA; with --key the owner encodes them, the shaken model scores shaken ids and the
    scores are decoded with the key (a homophonic key's copies have their probabilities summed).
    """
    where = resolve_device(device)
    _check_task(task_kind, prompt_column)
    key = load_key(key_path) if key_path else None
    if task_kind == LM:
        loaded = _causal_lm(model)
    else:
        loaded, head_trained = load_classifier(model)
        if not head_trained:
            raise ShaketuneError(f"{model} has no trained classification head; fine-tune it first")
    state = marker(loaded)
    if key is None and state is not None and state.get("state") == "shaken":
        raise KeyMismatchError(f"{model} is a shaken model; pass --key for private inference")
    if key is not None:
        for warning in key.check_shaken(loaded):
            warn(warning)
    tokenizer = _tokenizer_for(model)
    if tokenizer is None:
        tokenizer = load_tokenizer(tokenizer_name or DEFAULT_MODEL)
    if key is not None:
        key.check_tokenizer(tokenizer)
        key = with_mechanism(key, pretrained, tokenizer)
    if task_kind == LM:
        pairs = DataSource.parse(data).load_documents(text_column, prompt_column, not no_header)
        _evaluate_lm(loaded, tokenizer, key, pairs, max_length, batch_size, where, as_json)
        return
    table = DataSource.parse(data).load(text_column, label_column, not no_header)
    labels = label_indices(table.labels, loaded.config)
    token_ids = tokenize(tokenizer, table.texts, max_length)
    _check_vocabulary(token_ids, loaded.get_input_embeddings().weight.shape[0])
    with progress_bar() as bar:
        task = bar.add_task("evaluating", total=len(token_ids))
        result = evaluate_accuracy(
            loaded,
            token_ids,
            labels,
            pad_id=_pad_id(loaded),
            key=key,
            batch_size=batch_size,
            advance=lambda n: bar.advance(task, n),
            device=where,
        )
    emit(
        {
            "accuracy": result.accuracy,
            "correct": result.correct,
            "examples": result.examples,
            "private_inference": key is not None,
        },
        as_json,
        [f"accuracy {result.accuracy:.4f} ({result.correct}/{result.examples})"],
    )


def _check_vocabulary(token_ids: list[list[int]], rows: int) -> None:
    if max((max(seq) for seq in token_ids if seq), default=0) >= rows:
        raise DataError("the tokenizer produces ids beyond the model's vocabulary; wrong --tokenizer?")


def _evaluate_lm(
    model: Any,
    tokenizer: Any,
    key: Any,
    pairs: list[tuple[str, str]],
    max_length: int,
    batch_size: int,
    where: torch.device,
    as_json: bool,
) -> None:
    """Next-token accuracy and perplexity of a causal LM on (prompt, text) pairs (private inference with
    ``key``)."""
    token_ids, loss_from = tokenize_documents(tokenizer, pairs, max_length)
    if not targets_of(token_ids, loss_from):
        raise DataError(f"the data leaves no token to predict at --max-length {max_length}")
    # plaintext ids: within the key's vocabulary (private inference), else within the model's rows
    _check_vocabulary(
        token_ids, key.model.vocab_size if key else model.get_input_embeddings().weight.shape[0]
    )
    model.to(where)
    with progress_bar() as bar:
        task = bar.add_task("evaluating", total=len(token_ids))
        score = evaluate_next_token(
            model,
            token_ids,
            loss_from,
            lm_pad_id(tokenizer, model),
            key=key,
            batch_size=batch_size,
            advance=lambda n: bar.advance(task, n),
        )
    emit(
        {
            "accuracy": score.accuracy,
            "perplexity": score.perplexity,
            "correct": score.correct,
            "predictions": score.predictions,
            "private_inference": key is not None,
        },
        as_json,
        [
            f"next-token accuracy {score.accuracy:.4f} ({score.correct}/{score.predictions}), "
            f"perplexity {score.perplexity:.2f}"
        ],
    )


def tune(
    model: str = typer.Option(
        ..., "--model", "-m", help="Model directory to fine-tune (e.g. the shaken one)."
    ),
    data: Path = typer.Option(..., "--data", "-d", help="Encoded JSON-lines file from 'shaketune encode'."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for the tuned model (new or empty)."),
    task_kind: str = TaskKind,
    steps: int = typer.Option(150, "--steps", min=0, help="Optimiser steps."),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    learning_rate: float = typer.Option(5e-5, "--learning-rate", min=0.0),
    mode: str = typer.Option("full", "--mode", help=f"Which parameters train: {', '.join(TUNING_MODES)}."),
    lora_rank: int = LoraRank,
    lora_alpha: float = LoraAlpha,
    lora_targets: str = LoraTargets,
    seed: int = typer.Option(0, "--seed", help="Seeds the new head, dropout and batch order."),
    device: str = options.Device,
    as_json: bool = JsonOption,
) -> None:
    """Fine-tune a classifier on encoded data: the cloud's part, to check settings end to end.

    With --task-kind lm, tune a causal LM with next-token loss on an upload encoded with --task-kind lm
    (the loss covers each example's positions from its loss_from on). --mode lora trains low-rank
    adapters beside frozen weights and merges them in before saving.
    """
    where = resolve_device(device)
    _check_task(task_kind, None)
    try:
        budget = TuningBudget(steps, batch_size, learning_rate, mode, lora_rank, lora_alpha, lora_targets)
    except ValueError as exc:
        raise ShaketuneError(str(exc)) from None
    if mode != "lora" and (lora_rank, lora_alpha, lora_targets) != (
        LORA_DEFAULTS.lora_rank,
        LORA_DEFAULTS.lora_alpha,
        LORA_DEFAULTS.lora_targets,
    ):
        warn(
            f"--lora-rank, --lora-alpha and --lora-targets apply to --mode lora only; --mode {mode} "
            "ignores them"
        )
    upload = load_encoded(data)
    if upload.is_lm and task_kind != LM:
        raise DataError(
            f"{data} holds language-model examples (loss_from, no labels); tune them with --task-kind lm"
        )
    if not upload.is_lm and task_kind == LM:
        raise DataError(
            f"{data} holds classification examples (labels); for --task-kind lm encode documents with "
            "'shaketune encode --task-kind lm'"
        )
    tokenizer = _tokenizer_for(model)
    if upload.loss_from is not None:
        loaded = _causal_lm(model)
        objective, pad_id, targets = fine_tune_lm, lm_pad_id(tokenizer, loaded), upload.loss_from
    else:
        assert upload.labels is not None
        targets, names = label_ids(upload.labels)
        extra = {"id2label": names, "label2id": {v: k for k, v in names.items()}} if names else {}
        torch.manual_seed(seed)
        loaded, _ = load_classifier(model, num_labels=max(targets) + 1, **extra)
        objective, pad_id = fine_tune, _pad_id(loaded)
    _check_upload(upload, loaded)
    with progress_bar() as bar:
        task = bar.add_task("tuning", total=budget.steps)
        advance = lambda n: bar.advance(task, n)  # noqa: E731
        run = objective(loaded, upload.input_ids, targets, budget, pad_id, seed, advance, where)
    with directory_atomic(out) as tmp:
        loaded.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    emit(
        {
            "out": str(out),
            "task_kind": task_kind,
            "mode": mode,
            "steps": run.steps,
            "examples": run.examples,
            "tokens": run.tokens,
            "final_loss": run.final_loss,
            "seconds": round(run.seconds, 3),
        },
        as_json,
        [f"tuned {run.steps} steps ({run.tokens} tokens, final loss {run.final_loss:.4f}) -> {out}"],
    )


def _check_upload(upload: EncodedData, model: Any) -> None:
    """Refuse encoded ids the model has no embedding row for (encoded with another key or model)."""
    rows = model.get_input_embeddings().weight.shape[0]
    if max((max(seq) for seq in upload.input_ids if seq), default=0) >= rows:
        raise DataError(
            f"the encoded data holds ids beyond the model's {rows} embedding rows: encoded for another "
            "model or key (a homophonic key's upload needs the model shaken with that key)"
        )


def generate(
    model: Path = typer.Option(
        ..., "--model", "-m", help="The (tuned) shaken causal LM directory, as the cloud holds it."
    ),
    key_path: Path = KeyOption,
    pretrained: str | None = Pretrained,
    prompt: str | None = typer.Option(None, "--prompt", "-p", help="One prompt to continue."),
    prompts: Path | None = typer.Option(
        None, "--prompts", help="A UTF-8 text file of prompts, one per line (blank lines are skipped)."
    ),
    max_new_tokens: int = typer.Option(
        32,
        "--max-new-tokens",
        help=f"Tokens to generate per prompt, 1 to {MAX_NEW_TOKENS} (fewer where an end token comes first).",
    ),
    copy_mass: str = typer.Option(
        "sum",
        "--copy-mass",
        help="How a homophonic key's copies are merged: sum (a model tuned on shaken text) or mean "
        "(a freshly shaken one); a 1:1 key ignores it.",
    ),
    device: str = options.Device,
    as_json: bool = JsonOption,
) -> None:
    """Private generation: encode each prompt with the key, let the shaken model continue it greedily
    token by token, decode every prediction with the key."""
    check_max_new_tokens(max_new_tokens)
    check_copy_mass(copy_mass)
    texts = _prompts(prompt, prompts)
    where = resolve_device(device)
    key = load_key(key_path)
    if not model.is_dir():
        raise ShaketuneError(f"model directory not found: {model}")
    tokenizer = load_tokenizer(str(model))
    key.check_tokenizer(tokenizer)
    key = with_mechanism(key, pretrained, tokenizer)
    loaded = load_as_saved(str(model))
    check_language_model(loaded)
    for warning in key.check_shaken(loaded):
        warn(warning)
    loaded.to(where)
    stops = _stop_ids(tokenizer)
    generations = []
    with progress_bar() as bar, autocast(where):
        task = bar.add_task("generating", total=len(texts))
        for text in texts:
            ids = _prompt_ids(tokenizer, text, stops)
            tokens = private_generate(loaded, key, ids, max_new_tokens, copy_mass=copy_mass, stop_ids=stops)
            continuation = tokenizer.decode(tokens, skip_special_tokens=True)
            generations.append({"prompt": text, "continuation": continuation, "token_ids": tokens})
            bar.advance(task)
    lines = []
    for number, item in enumerate(generations):
        lines += [
            *([""] if number else []),
            f"prompt: {item['prompt']}",
            f"continuation: {item['continuation']}",
        ]
    emit(
        {"generations": generations, "key_fingerprint": key.fingerprint, "max_new_tokens": max_new_tokens},
        as_json,
        lines,
    )


def _prompts(prompt: str | None, path: Path | None) -> list[str]:
    """The prompts to continue: --prompt, or the non-blank lines of --prompts."""
    if (prompt is None) == (path is None):
        raise SettingsError("give exactly one of --prompt TEXT or --prompts FILE")
    if prompt is not None:
        if not prompt.strip():
            raise SettingsError("the prompt is empty")
        return [prompt]
    assert path is not None
    if not path.is_file():
        raise ShaketuneError(f"prompts file not found: {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ShaketuneError(f"prompts file {path} is not UTF-8 text") from None
    texts = [line for line in lines if line.strip()]
    if not texts:
        raise SettingsError(f"prompts file {path} holds no prompt (every line is blank)")
    return texts


def _stop_ids(tokenizer: Any) -> set[int]:
    """Where a continuation ends: the tokenizer's end-of-text and separator tokens."""
    ids = (getattr(tokenizer, name, None) for name in ("eos_token_id", "sep_token_id"))
    return {int(i) for i in ids if i is not None}


def _prompt_ids(tokenizer: Any, text: str, stops: set[int]) -> list[int]:
    """The prompt's plaintext ids with the tokenizer's leading special tokens (BOS, [CLS]) but without a
    trailing end token (BERT-style tokenizers append [SEP]): the model is to continue the text."""
    ids = list(tokenizer(text)["input_ids"])
    while ids and ids[-1] in stops:
        ids.pop()
    if not ids:
        raise SettingsError(f"the prompt {text!r} gives no tokens to continue")
    return ids


def _pad_id(model: Any) -> int:
    pad = getattr(model.config, "pad_token_id", None)
    return int(pad) if pad is not None else 0


def register(app: typer.Typer) -> None:
    for command in (keygen, shake, encode, tune, recover, evaluate, generate):
        app.command(command.__name__)(handle_errors(command))
