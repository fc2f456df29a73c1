"""Running the CLI in-process the way a script would: with --json, checking that no seed leaks."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from adaptive.cli import app

runner = CliRunner()
SEEDS: list[str] = []  # every seed a test made, to check no output ever shows one


def run(*args: str, ok: bool = True) -> dict:
    """Invoke ``shaketune ARGS --json`` and return its one JSON object; errors must be clean."""
    result = runner.invoke(app, [*args, "--json"])
    for seed in SEEDS:
        assert seed not in result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    if ok:
        assert result.exit_code == 0, (result.stdout, result.stderr)
        assert "error" not in payload
    else:
        assert result.exit_code != 0
        assert "Traceback" not in result.output
        assert payload["error"] in result.stderr.replace("\n", "")
    return payload


def remember_seed(key_path: Path) -> None:
    SEEDS.append(json.loads(Path(key_path).read_text())["seed"])


def tiny_search(
    sst2: Path, steps: str = "2", leakage_cap: bool = False, strategy: str = "plain", recovery: str = "0"
) -> list[str]:
    """``optimize`` options for the smallest fidelity: 32 private sentences, 24 to evaluate, 2-4 steps;
    no recovery training unless ``recovery`` lists steps (a trial that trains it attacks twice: about
    three times the seconds; tests/test_search.py's study searches it end to end); 1:1 keys (homophonic
    trials run twice the attacks; they are tested in test_homophonic*.py and test_trial.py) without
    substitution (its mechanism takes seconds to build per epsilon; tests/test_search.py searches it in a
    study of its own, test_substitution.py and test_sensitive_leakage.py test it) or mixing (its neighbour
    search takes seconds; test_mixing.py); no leakage
    cap unless ``leakage_cap`` (the caller gives one: no tiny setting is under the default cap, so every
    trial would stop after its attacks); every trial tuned in full (``plain``) unless another
    ``strategy`` is asked for (tests/test_screening.py)."""
    return [
        *([] if leakage_cap else ["--no-leakage-cap"]),
        "--strategy",
        strategy,
        "--train",
        str(sst2 / "train.tsv"),
        "--eval",
        f"{sst2 / 'dev.tsv'}[0:24]",
        "--public",
        f"{sst2 / 'dev.tsv'}[1000:]",
        "--train-size",
        "32",
        "--max-length",
        "16",
        "--steps",
        steps,
        "--learning-rates",
        "1e-4",
        "--batch-size",
        "8",
        "--recovery-steps",
        recovery,
        "--max-shares",
        "1",
        "--substitute",
        "off",
        "--mix",
        "off",
    ]
