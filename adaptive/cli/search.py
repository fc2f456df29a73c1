"""CLI commands of the search: optimize (the main job), select, studies, report, dashboard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from adaptive.budget import stop_after_tuned, storage_options
from adaptive.cli import options
from adaptive.cli.common import (
    JsonOption,
    emit,
    handle_errors,
    literal,
    progress_bar,
    stderr,
    warn,
    wide_console,
)
from adaptive.cli.flow import needs_public_text
from adaptive.inputs import check_inputs
from adaptive.runs import SearchTemplate
from adaptive.samplers import DEFAULT_SAMPLER, SAMPLERS
from adaptive.screening import DEFAULT_STRATEGY, STRATEGIES
from adaptive.selection import DEFAULT_POLICY, POLICIES, Candidate, cap_note, choose, why_nothing_is_feasible
from adaptive.space import SearchSpace
from adaptive.study import (
    DEFAULT_MAX_LEAKAGE,
    Caps,
    StoredReferences,
    StudyConfig,
    StudyError,
    cost_in_gflops,
    enqueue_settings,
    feasible_front,
    leakage_figures,
    load_settings_list,
    load_study,
    objective,
    open_study,
    runner_for,
    study_config,
    study_exists,
)
from adaptive.transfer import warm_start
from adaptive.trials import SCREENED_ATTR, count_tuned, is_measured, objectives_of, tuned
from objectives.device import resolve_device
from objectives.models import DEFAULT_MODEL
from objectives.task import TaskSpec
from objectives.trial import Fidelity, TrialSettings, not_learnt
from operators.errors import SettingsError
from storage.engine import optuna_storage, redacted, storage_url
from storage.repository import Repository

StorageOption = typer.Option(
    None, "--storage", help="Database URL (default: $SHAKETUNE_STORAGE, else sqlite:///shaketune.db)."
)
StudyOption = typer.Option(..., "--study", help="Study name.")
MaxLeakage = typer.Option(
    None, "--max-leakage", help="Cap: leakage (the study's leakage figure) at most this (0-1)."
)
MinAccuracy = typer.Option(None, "--min-accuracy", help="Cap: accuracy at least this (0-1).")
MaxCost = typer.Option(None, "--max-cost", help="Cap: cost at most this many GFLOP.")


def _csv(text: str | None, kind: type) -> tuple | None:
    if text is None:
        return None
    try:
        return tuple(kind(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise SettingsError(f"cannot read {text!r} as a comma-separated list of {kind.__name__}") from None


def _switches(text: str | None) -> tuple[bool, ...] | None:
    """``off``, ``on`` or ``off,on`` as the switch values to search."""
    if text is None:
        return None
    values = {"off": False, "on": True}
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts or any(part not in values for part in parts):
        raise SettingsError(f"give off, on or off,on, not {text!r}")
    return tuple(dict.fromkeys(values[part] for part in parts))


def _other_accuracy(row: dict[str, Any]) -> str:
    """The other accuracy beside the objective's, where they differ: the recovered model's beside private
    inference's, or the reverse for a study that maximises the recovered model's."""
    recovered = row.get("accuracy_of") == "recovered"
    other = row.get("private_accuracy") if recovered else row.get("recovered_accuracy")
    if other is None or other == row["accuracy"]:
        return ""
    return f" / {other:.4f} {'private' if recovered else 'recovered'}"


def _gap(plaintext: float | None, accuracy: float) -> float | None:
    """Plaintext tuning's accuracy minus the objective's (the one the study maximises)."""
    return None if plaintext is None else plaintext - accuracy


def _front_rows(front: list) -> list[dict[str, Any]]:
    rows = []
    for trial in front:
        accuracy, cost, leakage = objectives_of(trial)
        rows.append(
            {
                "trial": trial.number,
                "accuracy": accuracy,
                "accuracy_gap": _gap(trial.user_attrs.get("plaintext_accuracy"), accuracy),
                "accuracy_of": trial.user_attrs.get("accuracy_of", "private"),
                "recovered_accuracy": trial.user_attrs.get("recovered_accuracy"),
                "private_accuracy": trial.user_attrs.get("accuracy"),
                "baseline_accuracy": trial.user_attrs.get("baseline_accuracy"),
                "evaluated": trial.user_attrs.get("evaluated"),
                "cost_gflops": cost,
                "leakage": leakage,
                **leakage_figures(trial).to_dict(),
                "settings": trial.user_attrs.get("settings"),
            }
        )
    return rows


FRONT_COLUMNS = {  # header: right-aligned
    "trial": True,
    "accuracy": True,
    "gap": True,
    "rare tokens": True,
    "secrets": True,
    "leakage bound": True,
    "best attack run": True,
    "GFLOP": True,
    "shaking": False,
    "tuning": False,
}


def _percent_and_attack(value: float | None, attack: str | None, missing: str = "not measured") -> str:
    if value is None:
        return missing
    return f"{value:.2%} {str(attack or '').removeprefix('shaken/')}"


def _front_table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(
        title=escape(title),  # rich reads titles and cells as markup
        caption=LEAKAGE_CAPTION,
    )
    for column, right in FRONT_COLUMNS.items():
        table.add_column(column, justify="right" if right else "left")
    for row in rows:
        settings = TrialSettings.from_dict(row["settings"])
        gap = row["accuracy_gap"]
        learnt = not not_learnt(row["accuracy"], row["baseline_accuracy"], row.get("evaluated"))
        table.add_row(
            str(row["trial"]),
            f"{row['accuracy']:.4f}" + ("" if learnt else " not learnt") + _other_accuracy(row),
            f"{gap:+.4f}" if gap is not None else "",
            escape(_percent_and_attack(row["leakage_bound_rare"], row["strongest_rare_attack"], "-")),
            escape(_percent_and_attack(row["canary_recovery"], row["strongest_canary_attack"], "-")),
            escape(_percent_and_attack(row["leakage_bound"], row["strongest_bound_attack"])),
            escape(_percent_and_attack(row["leakage_attacks"], row["strongest_attack"])),
            f"{row['cost_gflops']:,.0f}",
            escape(settings.shaking.describe()),
            escape(settings.describe_budget()),
        )
    return table


LEAKAGE_CAPTION = (
    "rare tokens, secrets: the leakage bound on tokens outside the 1,000 most frequent public ones and on "
    "planted names, numbers, e-mails and dates. leakage bound: share of every private token recovered by "
    "an attacker who holds the key's fixed parts (invertible operators, copy groups, substitution "
    "mechanism), not its permutation or random draws; best attack run: the suite on "
    "the upload as it is (a lower bound). Neither is a guarantee. not learnt: no better than always giving "
    "the most common answer (label, or next token for a language model)."
)


TASK_KEYS = ("train", "eval", "public", "text_column", "label_column", "header", "kind", "prompt_column")
FIDELITY_KEYS = ("train_size", "eval_size", "max_length")
CAP_KEYS = ("max_leakage", "min_accuracy", "max_cost")


def _config(stored: StudyConfig | None, given: dict[str, Any], name: str) -> StudyConfig:
    """The stored config (or the defaults, for a new study) with the options given on this call. A new
    study gets the default leakage cap unless a cap is given or ``--no-leakage-cap`` opts out."""
    default_caps = Caps() if given["no_leakage_cap"] else Caps(max_leakage=DEFAULT_MAX_LEAKAGE)
    base = stored or StudyConfig(
        model=DEFAULT_MODEL, task=options.default_task(), target=name, caps=default_caps
    )
    if given["no_leakage_cap"] and given["max_leakage"] is not None:
        raise SettingsError("give either --max-leakage or --no-leakage-cap, not both")

    def merged(current: dict[str, Any], keys: tuple[str, ...], **extra: Any) -> dict[str, Any]:
        updates = {k: given[k] for k in keys if given[k] is not None}
        return {**current, **updates, **{k: v for k, v in extra.items() if v is not None}}

    space = {
        "operators": _csv(given["operators"], str),
        "steps": _csv(given["steps"], int),
        "learning_rates": _csv(given["learning_rates"], float),
        "modes": _csv(given["modes"], str),
        "batch_size": given["batch_size"],
        "recovery_steps": _csv(given["recovery_steps"], int),
        "recovery_parts": _csv(given["recovery_parts"], str),
        "recovery_objective": given["recovery_objective"],
        "max_shares": _csv(given["max_shares"], float),
        "lora_ranks": _csv(given["lora_ranks"], int),
        "substitute": _switches(given["substitute"]),
        "substitute_keep_top": _csv(given["keep_top"], int),
        "substitute_candidates": _csv(given["candidates"], str),
        "mix": _switches(given["mix"]),
    }
    return StudyConfig(
        model=given["model"] or base.model,
        task=TaskSpec.from_dict(merged(base.task.to_dict(), TASK_KEYS)),
        fidelity=Fidelity(
            **merged(base.fidelity.to_dict(), FIDELITY_KEYS, attack_tuned=given["attack_tuned"] or None)
        ),
        space=SearchSpace.from_dict(
            {**base.space.to_dict(), **{k: v for k, v in space.items() if v is not None}}
        ),
        caps=_caps(base.caps, given),
        target=given["target"] or base.target or name,
        seed=given["seed"] if given["seed"] is not None else base.seed,
        leakage_measure=given["leakage_measure"] or base.leakage_measure,
        strategy=given["strategy"] or base.strategy,
        leakage_objective=given["leakage_objective"] or base.leakage_objective,
        accuracy_of=given["accuracy_of"] or base.accuracy_of,
    )


def _caps(stored: Caps, given: dict[str, Any]) -> Caps:
    """The stored caps with those given now; ``--no-leakage-cap`` removes the leakage cap."""
    caps = {**stored.to_dict(), **{k: given[k] for k in CAP_KEYS if given[k] is not None}}
    if given["no_leakage_cap"]:
        caps["max_leakage"] = None
    return Caps.from_dict(caps)


def optimize(
    study_name: str = StudyOption,
    storage: str | None = StorageOption,
    trials: int = typer.Option(
        20,
        "--trials",
        "-n",
        min=0,
        help="Trials to run in this call (0: only create the study, for workers).",
    ),
    timeout: float | None = typer.Option(
        None, "--timeout", min=1, help="Stop starting trials after this many seconds."
    ),
    sampler: str = typer.Option(
        DEFAULT_SAMPLER, "--sampler", help=f"One of {', '.join(SAMPLERS)} (see docs/search.md)."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Seeds the sampler and the trial keys (default 0)."),
    strategy: str | None = typer.Option(
        None,
        "--strategy",
        help=f"How trials spend tuning: {', '.join(STRATEGIES)} (a new study: {DEFAULT_STRATEGY}; "
        "see docs/search.md).",
    ),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Pretrained model (default: bundled MiniLM)."
    ),
    train: str | None = typer.Option(
        None, "--train", help="Private training data (default SST-2 train.tsv)."
    ),
    eval_: str | None = typer.Option(
        None, "--eval", help=literal("Evaluation data (default SST-2 dev.tsv[0:1000]).")
    ),
    public: str | None = typer.Option(
        None, "--public", help=literal("Attacker's public text (default dev.tsv[1000:]).")
    ),
    text_column: str | None = typer.Option(
        None, "--text-column", help="Text column: a name, or a position (0 is the first)."
    ),
    label_column: str | None = typer.Option(
        None, "--label-column", help="Label column: a name, or a position (0 is the first)."
    ),
    task_kind: str | None = typer.Option(
        None, "--task-kind", help="classification (default) or lm (a causal LM, next-token accuracy)."
    ),
    prompt_column: str | None = options.PromptColumn,
    no_header: bool = options.NoHeader,
    train_size: int | None = typer.Option(None, "--train-size", min=1, help="Fidelity (default 2000)."),
    eval_size: int | None = typer.Option(None, "--eval-size", min=1, help="Fidelity (default all)."),
    max_length: int | None = typer.Option(None, "--max-length", min=4, help="Fidelity (default 64)."),
    attack_tuned: bool = options.AttackTuned,
    operators: str | None = typer.Option(
        None, "--operators", help="Vertical operators to search, comma-separated."
    ),
    steps: str | None = typer.Option(
        None, "--steps", help="Tuning steps to choose from, e.g. 50,100,150,300."
    ),
    learning_rates: str | None = typer.Option(None, "--learning-rates", help="e.g. 3e-5,1e-4."),
    modes: str | None = typer.Option(
        None,
        "--modes",
        help="Tuning modes: full,embeddings+head,body,lora (default full,embeddings+head).",
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, help="Tuning batch size (default 16)."
    ),
    lora_ranks: str | None = typer.Option(
        None, "--lora-ranks", help="LoRA ranks to choose from in mode lora, e.g. 4,8,16 (default 8)."
    ),
    recovery_steps: str | None = typer.Option(
        None,
        "--recovery-steps",
        help="Recovery-training steps on public text to choose from, e.g. 0,200 (0: none).",
    ),
    recovery_objective: str | None = typer.Option(
        None,
        "--recovery-objective",
        help="distill (match the plaintext body, default) or lm (masked/next-token).",
    ),
    recovery_parts: str | None = typer.Option(
        None,
        "--recovery-parts",
        help="What recovery training trains: all,embeddings,embeddings+first-layers,body.",
    ),
    max_shares: str | None = typer.Option(
        None,
        "--max-shares",
        help="Homophonic flattening levels to choose from: the largest share of the text any one shaken "
        "id may carry, e.g. 1,0.005,0.002 (1: a 1:1 permutation).",
    ),
    substitute: str | None = typer.Option(
        None,
        "--substitute",
        help="Per-occurrence substitution to search: off, on or off,on (default off,on; see docs/flow.md).",
    ),
    keep_top: str | None = typer.Option(
        None,
        "--keep-top",
        help="Substitution: how many of the most frequent public tokens may pass unchanged, to choose "
        "from, e.g. 0,300,1000 (default 0,100,300,1000,3000).",
    ),
    candidates: str | None = typer.Option(
        None,
        "--candidates",
        help="Substitution's candidate groups to choose from: vocabulary (one group per kind of token), "
        "clusters (clusters of nearest tokens), mask (the unknown token for all), kept (a common word "
        "near it; needs keep_top > 0), comma-separated (default vocabulary,clusters,mask).",
    ),
    mix: str | None = typer.Option(
        None,
        "--mix",
        help="Cluster mixing of the embedding rows to search: off, on or off,on (default off,on; see "
        "docs/flow.md).",
    ),
    max_leakage: float | None = MaxLeakage,
    no_leakage_cap: bool = typer.Option(
        False,
        "--no-leakage-cap",
        help=f"Search without a leakage cap (a new study otherwise gets --max-leakage "
        f"{DEFAULT_MAX_LEAKAGE}); the selection is then held to no privacy figure.",
    ),
    min_accuracy: float | None = MinAccuracy,
    max_cost: float | None = MaxCost,
    leakage_measure: str | None = typer.Option(
        None,
        "--leakage-measure",
        help="Leakage figure to minimise and cap: bound (default; the key's invertible operators assumed "
        "known to the attacker) or attacks (the suite's best attack, a lower bound).",
    ),
    accuracy_of: str | None = typer.Option(
        None,
        "--accuracy-of",
        help="The accuracy to maximise: private (default: the cloud's model by private inference, queries "
        "encoded and substituted as uploaded) or recovered (the owner's recovered model on plaintext).",
    ),
    leakage_objective: str | None = typer.Option(
        None,
        "--leakage-objective",
        help="Which occurrences the leakage figure scores: sensitive (default for a new study: the worse "
        "of rare tokens and planted secrets such as names and numbers) or all (every private token).",
    ),
    target: str | None = typer.Option(
        None, "--target", help="Target the study chooses settings for (default: study name)."
    ),
    enqueue: Path | None = typer.Option(
        None,
        "--enqueue",
        help="A JSON file of settings (one object or a list, as select writes them) to measure first.",
    ),
    warm_start_study: str | None = typer.Option(
        None, "--warm-start", help="Enqueue this study's feasible front first."
    ),
    warm_start_storage: str | None = typer.Option(
        None, "--warm-start-storage", help="Its storage (default: --storage)."
    ),
    device: str = options.Device,
    as_json: bool = JsonOption,
) -> None:
    """Search shaking settings: maximise accuracy, minimise cost and leakage, within the caps."""
    import optuna

    where = resolve_device(device)  # before anything is stored: a bad device leaves nothing behind
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial's error is reported once, cleanly
    url = storage_url(storage)
    backend = optuna_storage(url, **storage_options())
    repository = Repository(url)
    given = dict(
        model=model,
        train=train,
        eval=eval_,
        public=public,
        text_column=text_column,
        label_column=label_column,
        kind=task_kind,
        prompt_column=prompt_column,
        header=False if no_header else None,
        train_size=train_size,
        eval_size=eval_size,
        max_length=max_length,
        attack_tuned=attack_tuned,
        operators=operators,
        steps=steps,
        learning_rates=learning_rates,
        modes=modes,
        batch_size=batch_size,
        lora_ranks=lora_ranks,
        recovery_steps=recovery_steps,
        recovery_parts=recovery_parts,
        recovery_objective=recovery_objective,
        max_shares=max_shares,
        max_leakage=max_leakage,
        no_leakage_cap=no_leakage_cap,
        min_accuracy=min_accuracy,
        max_cost=max_cost,
        target=target,
        seed=seed,
        leakage_measure=leakage_measure,
        leakage_objective=leakage_objective,
        accuracy_of=accuracy_of,
        substitute=substitute,
        keep_top=keep_top,
        candidates=candidates,
        mix=mix,
        strategy=strategy,
    )
    stored = study_config(load_study(study_name, backend)) if study_exists(study_name, backend) else None
    config = _config(stored, given, study_name)
    if sampler not in SAMPLERS:
        raise SettingsError(f"unknown sampler {sampler!r}; choose from {', '.join(SAMPLERS)}")
    check_inputs(config.task, config.model)  # before the study exists: a bad task leaves nothing behind
    study = open_study(study_name, backend, config, sampler)
    template = SearchTemplate.of(config, trials or SearchTemplate().trials, sampler).to_dict()
    record = repository.ensure_target(
        config.target,
        config.model,
        config.task.to_dict(),
        config.task.fingerprint(),
        config.caps.to_dict(),
        search=template,
    )
    if not record.search:  # a target from an older database: give it this study's way of searching
        repository.update_target(config.target, search=template)
    enqueued = 0
    if enqueue is not None:
        enqueued += enqueue_settings(study, load_settings_list(str(enqueue)), config.space, enqueue.name)
        stderr.print(f"enqueued {enqueued} settings from {enqueue}", highlight=False, markup=False)
    runner = runner_for(config, StoredReferences(repository), where)
    if warm_start_study:
        source_storage = optuna_storage(warm_start_storage) if warm_start_storage else backend
        source = load_study(warm_start_study, source_storage)
        enqueued += warm_start(study, source, config.space, config, cost_in_gflops(runner, config))
        stderr.print(
            f"warm start: enqueued {enqueued} settings from {warm_start_study}", highlight=False, markup=False
        )
    before = len(study.trials)
    with progress_bar() as bar:
        task = bar.add_task(f"{study_name}: starting", total=trials)
        status = {"trial": "", "best": "no feasible trial yet"}

        def stage(name: str, done: int, total: int) -> None:
            bar.update(task, description=f"{status['trial']} {name} {done}/{total} | best: {status['best']}")

        def after_trial(study: Any, trial: Any) -> None:
            front = feasible_front(study)
            if front:
                accuracy, cost, leakage = objectives_of(front[0])
                status["best"] = (
                    f"acc {accuracy:.3f} leak {leakage:.3f} cost {cost:,.0f} (#{front[0].number})"
                )
            if tuned(trial):
                bar.advance(task)
            status["trial"] = f"trial {trial.number + 1}:"

        status["trial"] = f"trial {before}:"
        if trials > 0:
            study.optimize(
                objective(config, runner, stage),
                timeout=timeout,
                callbacks=[after_trial, stop_after_tuned(study, trials)],
                gc_after_trial=True,
            )
    repository.update_target(config.target, last_study=study_name)
    all_trials = study.get_trials(deepcopy=False)
    front = feasible_front(study)
    rows = _front_rows(front)
    result = {
        "study": study_name,
        "storage": redacted(url),
        "target": config.target,
        "trials": len(all_trials),
        "trials_this_run": len(all_trials) - before,
        "measured": sum(is_measured(t) for t in all_trials),
        "tuned": sum(tuned(t) for t in all_trials),
        "screened": sum(bool(t.user_attrs.get(SCREENED_ATTR)) for t in all_trials),
        "stopped_early": sum(bool(t.user_attrs.get("stopped_early")) for t in all_trials),
        "strategy": config.strategy,
        "warm_started": enqueued,
        "caps": config.caps.to_dict(),
        "pareto": rows,
    }
    if as_json:
        emit(result, True, [])
        return
    typer.echo(
        f"study {study_name}: {result['trials']} trials ({result['trials_this_run']} now, strategy "
        f"{config.strategy}): {result['screened']} screened out before tuning (a cap, or dominated), "
        f"{result['tuned']} tuned, {result['measured']} of them to the full budget"
    )
    if rows:
        wide_console().print(_front_table(f"feasible Pareto front of {study_name}", rows))
    else:
        typer.echo("no feasible trial yet: relax the caps or run more trials")
    typer.echo(f"choose one with: shaketune select --study {study_name}")


BUDGET_ATTR = "shaketune_budget"


def worker(
    study_name: str = StudyOption,
    storage: str | None = StorageOption,
    trials: int | None = typer.Option(
        None, "--trials", "-n", min=1, help="The study's total trial budget, shared by all its workers."
    ),
    timeout: float | None = typer.Option(
        None, "--timeout", min=1, help="Seconds from now after which no worker starts another trial."
    ),
    sampler: str = typer.Option(DEFAULT_SAMPLER, "--sampler", help=f"One of {', '.join(SAMPLERS)}."),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="Torch threads (1 when one worker per core)."
    ),
    device: str = options.Device,
    as_json: bool = JsonOption,
) -> None:
    """Join a study (made by 'optimize') and run trials until its shared budget or deadline is reached."""
    import hashlib
    from datetime import datetime, timedelta, timezone

    import optuna
    import torch

    from adaptive.budget import run_budget, worker_name

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    where = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    if sampler not in SAMPLERS:
        raise SettingsError(f"unknown sampler {sampler!r}; choose from {', '.join(SAMPLERS)}")
    url = storage_url(storage)
    backend = optuna_storage(url, **storage_options())
    config = study_config(load_study(study_name, backend))
    me = worker_name()
    sampler_seed = config.seed + int.from_bytes(hashlib.sha256(me.encode()).digest()[:3], "big")
    study = open_study(study_name, backend, config, sampler, sampler_seed)
    budget = dict(study.user_attrs.get(BUDGET_ATTR) or {})
    if trials is not None:
        budget["trials"] = trials
    if timeout is not None:
        budget["deadline"] = (datetime.now(timezone.utc) + timedelta(seconds=timeout)).isoformat()
    if "trials" not in budget:
        raise SettingsError(f"study {study_name!r} has no trial budget yet: give --trials N (the total)")
    study.set_user_attr(BUDGET_ATTR, budget)
    deadline = datetime.fromisoformat(budget["deadline"]) if budget.get("deadline") else None
    repository = Repository(url)
    runner = runner_for(config, StoredReferences(repository), where)
    with progress_bar() as bar:
        task = bar.add_task(f"{study_name} ({me})", total=budget["trials"], completed=count_tuned(study))

        def stage(name: str, done: int, total: int) -> None:
            bar.update(
                task, completed=count_tuned(study), description=f"{study_name} ({me}): {name} {done}/{total}"
            )

        mine = run_budget(study, objective(config, runner, stage), budget["trials"], repository, deadline)
    done = count_tuned(study)
    emit(
        {
            "study": study_name,
            "worker": me,
            "completed_by_this_worker": mine,
            "completed": done,
            "budget": budget["trials"],
            "deadline": budget.get("deadline"),
        },
        as_json,
        [f"{me}: completed {mine} trials; study {study_name} has {done} of {budget['trials']}"],
    )


def select(
    study_name: str = StudyOption,
    storage: str | None = StorageOption,
    policy: str = typer.Option(
        DEFAULT_POLICY, "--policy", help=f"One of {', '.join(POLICIES)} (see docs/search.md)."
    ),
    max_leakage: float | None = MaxLeakage,
    min_accuracy: float | None = MinAccuracy,
    max_cost: float | None = MaxCost,
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Settings file to write (default STUDY-settings.json)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Choose a setting from the study's feasible Pareto front; write it for keygen; record the choice."""
    url = storage_url(storage)
    study = load_study(study_name, optuna_storage(url))
    config = study_config(study)
    caps = config.caps.tighter(Caps(max_leakage, min_accuracy, max_cost))
    front = feasible_front(study, caps)
    if not front:
        shown = ", ".join(f"{k} {v}" for k, v in caps.to_dict().items() if v is not None) or "no caps"
        raise StudyError(
            f"no measured trial of {study_name!r} is feasible within {shown}: "
            f"{why_nothing_is_feasible(study, caps).reason}"
        )
    choice = choose([Candidate.of(study_name, t) for t in front], policy)
    chosen = choice.candidate
    out = out or Path(f"{study_name}-settings.json")
    chosen.settings.save(out)
    repository = Repository(url)
    repository.ensure_target(
        config.target, config.model, config.task.to_dict(), config.task.fingerprint(), config.caps.to_dict()
    )
    reason = choice.reason + cap_note(caps)
    record = repository.record_selection(chosen.record(config.target, policy, caps.to_dict(), reason))
    emit(
        {
            "study": study_name,
            "target": config.target,
            "trial": chosen.trial_number,
            "policy": policy,
            "reason": reason,
            "accuracy": chosen.accuracy,
            "accuracy_of": config.accuracy_of,
            "private_accuracy": chosen.private_accuracy,
            "recovered_accuracy": chosen.recovered_accuracy,
            "plaintext_accuracy": chosen.plaintext_accuracy,
            "baseline_accuracy": chosen.baseline_accuracy,
            "cost_gflops": chosen.cost_gflops,
            "leakage": chosen.leakage,
            **(chosen.figures.to_dict() if chosen.figures else {}),
            "caps": caps.to_dict(),
            "settings": chosen.settings.to_dict(),
            "out": str(out),
            "selection_id": record.id,
        },
        as_json,
        [
            f"selected trial {chosen.trial_number} of {study_name} ({reason})",
            f"{chosen.describe_accuracy()}, cost {chosen.cost_gflops:,.0f} GFLOP",
            f"leakage {chosen.describe_leakage()}",
            f"settings {chosen.settings.shaking.describe()} | tuning {chosen.settings.tuning.steps} steps",
            f"wrote {out}; make the real key with: shaketune keygen --settings {out} --out owner.key"
            + (
                f" --public-text '{config.task.public}'" if needs_public_text(chosen.settings.shaking) else ""
            ),
        ],
    )


def studies(storage: str | None = StorageOption, as_json: bool = JsonOption) -> None:
    """List the studies in the storage with trial counts and best feasible points."""
    import optuna
    from optuna.trial import TrialState

    backend = optuna_storage(storage_url(storage))
    listing = []
    for name in optuna.get_all_study_names(backend):
        study = optuna.load_study(study_name=name, storage=backend)
        trials = study.get_trials(deepcopy=False)
        states = {state.name.lower(): sum(t.state == state for t in trials) for state in TrialState}
        complete = states["complete"]  # failed, pruned and running trials are not counted as trials
        entry: dict[str, Any] = {"study": name, "trials": complete, "states": states}
        try:
            config = study_config(study)
            front = feasible_front(study)
            entry.update(
                target=config.target,
                model=config.model,
                caps=config.caps.to_dict(),
                stopped_early=sum(bool(t.user_attrs.get("stopped_early")) for t in trials),
                front_size=len(front),
                best_accuracy=max((objectives_of(t)[0] for t in front), default=None),
                lowest_leakage=min((objectives_of(t)[2] for t in front), default=None),
                lowest_cost=min((objectives_of(t)[1] for t in front), default=None),
            )
        except StudyError:
            entry["note"] = "not a shaketune study"
        listing.append(entry)

    def figure(value: float | None, form: str) -> str:
        return "-" if value is None else format(value, form)

    def others(states: dict[str, int]) -> str:
        shown = [f"{count} {state}" for state, count in states.items() if count and state != "complete"]
        return f" ({', '.join(shown)})" if shown else ""

    lines = [
        f"{e['study']}: {e['trials']} trials{others(e['states'])}, front {e.get('front_size', '-')}, "
        f"best accuracy {figure(e.get('best_accuracy'), '.4f')}, lowest leakage "
        f"{figure(e.get('lowest_leakage'), '.4f')}, lowest cost {figure(e.get('lowest_cost'), ',.0f')} GFLOP"
        for e in listing
    ] or ["no studies"]
    emit({"studies": listing}, as_json, lines)


def report(
    study_name: str = StudyOption,
    storage: str | None = StorageOption,
    out: Path = typer.Option(..., "--out", "-o", help="Directory for index.html (new or empty)."),
    as_json: bool = JsonOption,
) -> None:
    """Write an HTML report: Pareto-front plots and the feasible front as a table."""
    from adaptive.report import write_report

    study = load_study(study_name, optuna_storage(storage_url(storage)))
    page = write_report(study, out)
    emit({"study": study_name, "report": str(page)}, as_json, [f"wrote {page}"])


def dashboard(
    storage: str | None = StorageOption,
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Interface to bind (keep it local; see docs/service.md)."
    ),
    port: int = typer.Option(8080, "--port", min=1, max=65535),
) -> None:
    """Serve optuna-dashboard on the same storage (blocks until interrupted)."""
    from optuna_dashboard import run_server

    url = storage_url(storage)
    if host not in ("127.0.0.1", "localhost", "::1"):
        warn(
            f"binding {host}: optuna-dashboard has no authentication; put it behind a reverse proxy with "
            "authentication"
        )
    shown = f"dashboard on http://{host}:{port} for {redacted(url)} (Ctrl-C to stop)"
    stderr.print(shown, highlight=False, markup=False)
    run_server(optuna_storage(url), host=host, port=port)


def register(app: typer.Typer) -> None:
    for command in (optimize, worker, select, studies, report):
        app.command(command.__name__)(handle_errors(command))
    app.command("dashboard")(handle_errors(dashboard))
