"""The measuring commands: attack an upload, measure a setting end to end."""

import json

import pytest
from typer.testing import CliRunner

from adaptive.cli import app
from tests.cli import run

runner = CliRunner()


@pytest.fixture(scope="module")
def upload(tmp_path_factory, sst2):
    """A horizontal-only upload of 300 training sentences."""
    path = tmp_path_factory.mktemp("attack")
    (path / "private.tsv").write_text("\n".join((sst2 / "train.tsv").read_text().splitlines()[:301]) + "\n")
    run("keygen", "--preset", "horizontal-only", "--out", str(path / "k.key"))
    run("shake", "--key", str(path / "k.key"), "--out", str(path / "shaken"))
    run(
        "encode",
        "--key",
        str(path / "k.key"),
        "--data",
        str(path / "private.tsv"),
        "--out",
        str(path / "up.jsonl"),
    )
    return path


def test_attack_reports_every_attack_and_the_maximum(upload, sst2):
    result = run(
        "attack",
        "--shaken-model",
        str(upload / "shaken"),
        "--shaken-data",
        str(upload / "up.jsonl"),
        "--truth-key",
        str(upload / "k.key"),
        "--public-text",
        f"{sst2 / 'dev.tsv'}[1000:]",  # a row range, like every data option
    )
    suite = {
        "frequency",
        "context",
        "nearest",
        "nearest_standardized",
        "posterior",
        "joint_w0.1",
        "alignment",
        "relational",
    }
    assert set(result["attacks"]) == suite
    informed = {"nearest", "nearest_standardized", "posterior", "joint_w0.1"}
    assert set(result["informed_attacks"]) == informed
    assert result["leakage_attacks"] >= 0.99 and result["leakage_attacks"] == max(
        a["recovery"] for a in result["attacks"].values()
    )
    assert result["leakage_bound"] == max(
        a["recovery"] for a in [*result["attacks"].values(), *result["informed_attacks"].values()]
    )
    assert 0.05 < result["attacks"]["frequency"]["recovery"] < 0.5


def test_attack_without_public_text_warns_and_skips_the_prior(upload):
    args = ["attack", "--shaken-model", str(upload / "shaken"), "--shaken-data", str(upload / "up.jsonl")]
    outcome = runner.invoke(app, [*args, "--truth-key", str(upload / "k.key"), "--json"])
    assert outcome.exit_code == 0, outcome.output
    assert "frequency" not in json.loads(outcome.stdout)["attacks"]
    assert "leakage may be underestimated" in outcome.stderr


def test_measure_one_setting(tmp_path, sst2):
    settings = tmp_path / "s.json"
    settings.write_text(
        json.dumps(
            {"vertical": [{"op": "gaussian", "intensity": 1.0}], "tuning": {"steps": 2, "batch_size": 8}}
        )
    )
    result = run(
        "measure",
        "--settings",
        str(settings),
        "--train",
        str(sst2 / "train.tsv"),
        "--eval",
        f"{sst2 / 'dev.tsv'}[0:40]",
        "--public",
        f"{sst2 / 'dev.tsv'}[1000:]",
        "--train-size",
        "32",
        "--max-length",
        "24",
    )
    assert result["settings"]["tuning"]["steps"] == 2
    assert 0 <= result["accuracy"] <= 1 and result["leakage_bound"] >= 0.9 and result["cost_gflops"] > 0
    # keygen accepts the same file: the tuning section is for the search, not the key
    key = run("keygen", "--settings", str(settings), "--out", str(tmp_path / "k.key"))
    assert key["settings"]["vertical"][0]["op"] == "gaussian"
