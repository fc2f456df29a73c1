"""The owner's CLI flow end to end: keygen, shake, encode, (cloud tuning), evaluate, recover."""

import json
import os
import stat

import pytest
import torch

from objectives.data import read_labelled_text
from objectives.encoded import load_encoded
from tests.cli import remember_seed, run


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, sst2):
    path = tmp_path_factory.mktemp("cli")
    rows = (sst2 / "dev.tsv").read_text().splitlines()[:97]
    (path / "data.tsv").write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def key_path(workdir):
    payload = run("keygen", "--preset", "medium", "--out", str(workdir / "owner.key"))
    path = workdir / "owner.key"
    remember_seed(path)
    assert payload["fingerprint"] and payload["moved_ids"] == 30517
    assert payload["settings"]["vertical"][0]["op"] == "tilt"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    return path


def test_owner_flow_private_inference_equals_recovered_model(workdir, key_path):
    shaken, encoded = workdir / "shaken", workdir / "upload.jsonl"
    run("shake", "--key", str(key_path), "--out", str(shaken))
    assert json.loads((shaken / "config.json").read_text())["shaketune"]["state"] == "shaken"

    payload = run(  # data options take row ranges like every other
        "encode", "--key", str(key_path), "--data", f"{workdir / 'data.tsv'}[0:80]", "--out", str(encoded)
    )
    assert payload["examples"] == 80
    upload = load_encoded(encoded)
    assert upload.labels == read_labelled_text(workdir / "data.tsv").labels[:80]

    tuned = workdir / "tuned"  # the cloud's part: fine-tune the shaken model on the shaken ids
    run_ = run("tune", "--model", str(shaken), "--data", str(encoded), "--out", str(tuned), "--steps", "4")
    assert run_["steps"] == 4 and run_["examples"] == 64
    private = run(
        "evaluate", "--model", str(tuned), "--data", str(workdir / "data.tsv"), "--key", str(key_path)
    )
    assert private["examples"] == 96 and private["private_inference"]
    part = run(
        "evaluate", "--model", str(tuned), "--data", f"{workdir / 'data.tsv'}[-16:]", "--key", str(key_path)
    )
    assert part["examples"] == 16

    refused = run("evaluate", "--model", str(tuned), "--data", str(workdir / "data.tsv"), ok=False)
    assert "pass --key" in refused["error"]

    recovered = workdir / "recovered"
    run("recover", "--model", str(tuned), "--key", str(key_path), "--out", str(recovered))
    plain = run("evaluate", "--model", str(recovered), "--data", str(workdir / "data.tsv"))
    assert plain["correct"] == private["correct"]
    assert not plain["private_inference"]


def test_a_substituting_key_runs_the_owners_flow_and_the_attack_scores_what_was_written(workdir, sst2):
    """The rare-tokens preset through the CLI: its key needs public text; encoding draws the same upload
    every time; private evaluation and the attack read the public model for the mechanism; the attack is
    scored against the plaintext only when it is given (and refuses otherwise)."""
    public = f"{sst2 / 'dev.tsv'}[1000:]"
    key = workdir / "rare.key"
    refused = run("keygen", "--preset", "rare-tokens", "--out", str(key), ok=False)
    assert "need --public-text" in refused["error"]
    made = run("keygen", "--preset", "rare-tokens", "--public-text", public, "--out", str(key))
    remember_seed(key)
    assert made["settings"]["substitute"]["keep_top"] == 1000
    data = f"{workdir / 'data.tsv'}[0:64]"
    first, second = workdir / "rare-1.jsonl", workdir / "rare-2.jsonl"
    run("encode", "--key", str(key), "--data", data, "--max-length", "32", "--out", str(first))
    run("encode", "--key", str(key), "--data", data, "--max-length", "32", "--out", str(second))
    assert first.read_bytes() == second.read_bytes()  # the same text, the same upload
    shaken, tuned = workdir / "rare-shaken", workdir / "rare-tuned"
    run("shake", "--key", str(key), "--out", str(shaken))
    run("tune", "--model", str(shaken), "--data", str(first), "--out", str(tuned), "--steps", "2")
    private = run("evaluate", "--model", str(tuned), "--data", data, "--key", str(key), "--max-length", "32")
    assert private["examples"] == 64 and private["private_inference"]
    attack = ["attack", "--shaken-model", str(shaken), "--shaken-data", str(first), "--truth-key", str(key)]
    attack += ["--public-text", public, "--max-length", "32"]
    assert "scored against the plaintext" in run(*attack, ok=False)["error"]
    scored = run(*attack, "--private-data", data)
    assert "decoding" in scored["informed_attacks"]
    assert scored["exposure"]["unchanged"]["all"] < 0.9 and scored["leakage_bound_rare"] < 0.05
    mismatch = run(*attack, "--private-data", f"{workdir / 'data.tsv'}[1:65]", ok=False)
    assert "does not match the upload" in mismatch["error"]


def test_keygen_from_a_settings_file_and_its_errors(workdir):
    settings = workdir / "settings.json"
    settings.write_text(json.dumps({"coverage": 0.5, "vertical": [{"op": "laplace", "intensity": 1.0}]}))
    payload = run("keygen", "--settings", str(settings), "--out", str(workdir / "half.key"))
    remember_seed(workdir / "half.key")
    assert payload["moved_ids"] == round(0.5 * 30517)

    assert (
        "already exists"
        in run("keygen", "--settings", str(settings), "--out", str(workdir / "half.key"), ok=False)["error"]
    )
    assert "exactly one of" in run("keygen", "--out", str(workdir / "x.key"), ok=False)["error"]
    settings.write_text(json.dumps({"vertical": [{"op": "shuffle", "intensity": 1.0}]}))
    error = run("keygen", "--settings", str(settings), "--out", str(workdir / "y.key"), ok=False)["error"]
    assert "settings.json" in error and "unknown vertical operator 'shuffle'" in error
    assert not (workdir / "y.key").exists()


def test_recover_with_the_wrong_key_is_refused(workdir, key_path):
    other = workdir / "other.key"
    run("keygen", "--preset", "light", "--out", str(other))
    remember_seed(other)
    shaken = workdir / "shaken-other"
    run("shake", "--key", str(other), "--out", str(shaken))
    error = run(
        "recover", "--model", str(shaken), "--key", str(key_path), "--out", str(workdir / "r"), ok=False
    )
    assert "not with this key" in error["error"]
    assert not (workdir / "r").exists()


def test_bad_inputs_give_clear_errors(workdir, key_path):
    bad = workdir / "bad.tsv"
    bad.write_text("text\tlabel\nfine\t1\n")
    error = run(
        "encode", "--key", str(key_path), "--data", str(bad), "--out", str(workdir / "e.jsonl"), ok=False
    )
    assert "no column 'sentence'" in error["error"] and "--text-column" in error["error"]
    assert not (workdir / "e.jsonl").exists()
    payload = run(
        "encode",
        "--key",
        str(key_path),
        "--data",
        str(bad),
        "--text-column",
        "text",
        "--out",
        str(workdir / "e.jsonl"),
    )
    assert payload["examples"] == 1

    (workdir / "empty.csv").write_text("")
    assert (
        "is empty"
        in run(
            "encode",
            "--key",
            str(key_path),
            "--data",
            str(workdir / "empty.csv"),
            "--out",
            str(workdir / "f.jsonl"),
            ok=False,
        )["error"]
    )
    assert (
        "key file not found"
        in run("shake", "--key", str(workdir / "nope.key"), "--out", str(workdir / "s"), ok=False)["error"]
    )
    assert (
        "model directory not found"
        in run(
            "shake",
            "--key",
            str(key_path),
            "--model",
            "./no-such-model",
            "--out",
            str(workdir / "s"),
            ok=False,
        )["error"]
    )
    (workdir / "occupied").mkdir()
    (workdir / "occupied" / "file").write_text("mine")
    assert (
        "not an empty directory"
        in run("shake", "--key", str(key_path), "--out", str(workdir / "occupied"), ok=False)["error"]
    )
    assert (workdir / "occupied" / "file").read_text() == "mine"


def test_shake_with_recovery_training_uploads_the_trained_body_and_recovery_stays_exact(
    workdir, key_path, sst2
):
    plain_shaken, shaken = workdir / "shaken-plain", workdir / "shaken-recovered"
    run("shake", "--key", str(key_path), "--out", str(plain_shaken))
    public = f"{sst2 / 'dev.tsv'}[1000:1100]"
    payload = run(
        "shake",
        "--key",
        str(key_path),
        "--out",
        str(shaken),
        "--recovery-data",
        public,
        "--recovery-steps",
        "4",
    )
    recovery = payload["recovery"]
    assert recovery["steps"] == 4 and recovery["heldout_loss_after"] < recovery["heldout_loss_before"]
    from safetensors.torch import load_file

    before, after = load_file(plain_shaken / "model.safetensors"), load_file(shaken / "model.safetensors")
    assert any(not torch.equal(before[name], after[name]) for name in before)

    encoded, tuned = workdir / "upload-r.jsonl", workdir / "tuned-r"
    run("encode", "--key", str(key_path), "--data", str(workdir / "data.tsv"), "--out", str(encoded))
    run("tune", "--model", str(shaken), "--data", str(encoded), "--out", str(tuned), "--steps", "2")
    private = run(
        "evaluate", "--model", str(tuned), "--data", str(workdir / "data.tsv"), "--key", str(key_path)
    )
    run("recover", "--model", str(tuned), "--key", str(key_path), "--out", str(workdir / "recovered-r"))
    plain = run("evaluate", "--model", str(workdir / "recovered-r"), "--data", str(workdir / "data.tsv"))
    assert plain["correct"] == private["correct"]

    missing = run(
        "shake", "--key", str(key_path), "--out", str(workdir / "x"), "--recovery-steps", "3", ok=False
    )
    assert "needs --recovery-data" in missing["error"]
    bad = ["--recovery-data", public, "--recovery-steps", "3", "--recovery-part", "head"]
    assert (
        "recovery part must be one of"
        in run("shake", "--key", str(key_path), "--out", "y", *bad, ok=False)["error"]
    )


def test_homophonic_key_flow_encodes_at_random_and_recovers_by_averaging_copies(workdir, sst2):
    settings = workdir / "flat.json"
    settings.write_text(json.dumps({"homophones": {"max_share": 0.005}}))
    key = workdir / "flat.key"
    missing = run("keygen", "--settings", str(settings), "--out", str(key), ok=False)
    assert "--public-text" in missing["error"] and not key.exists()
    payload = run(
        "keygen", "--settings", str(settings), "--public-text", str(sst2 / "dev.tsv"), "--out", str(key)
    )
    remember_seed(key)
    assert payload["shaken_rows"] > 30522 and payload["settings"]["homophones"]["max_share"] == 0.005

    shaken, data = workdir / "flat-shaken", str(workdir / "data.tsv")
    run("shake", "--key", str(key), "--out", str(shaken))
    assert json.loads((shaken / "config.json").read_text())["vocab_size"] == payload["shaken_rows"]
    first, second = workdir / "flat-1.jsonl", workdir / "flat-2.jsonl"
    run("encode", "--key", str(key), "--data", data, "--out", str(first))
    run("encode", "--key", str(key), "--data", data, "--out", str(second))
    assert load_encoded(first).input_ids != load_encoded(second).input_ids  # a fresh copy per occurrence

    tuned, recovered = workdir / "flat-tuned", workdir / "flat-recovered"
    run("tune", "--model", str(shaken), "--data", str(first), "--out", str(tuned), "--steps", "4")
    private = run("evaluate", "--model", str(tuned), "--data", data, "--key", str(key))
    run("recover", "--model", str(tuned), "--key", str(key), "--out", str(recovered))
    assert json.loads((recovered / "config.json").read_text())["vocab_size"] == 30522
    plain = run("evaluate", "--model", str(recovered), "--data", data)
    assert abs(plain["correct"] - private["correct"]) <= 5  # copies tuned apart are averaged
