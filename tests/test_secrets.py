"""No key and no key seed ever reaches the database or an API response: only fingerprints do."""

import json

import optuna

from adaptive.study import measurement_seed, study_config
from objectives.trial import TrialSettings, trial_key_seed
from storage.engine import optuna_storage
from tests.cli import remember_seed, run, tiny_search
from tests.service import Service


def test_database_and_api_hold_no_key_material(tmp_path, sst2):
    storage = f"sqlite:///{tmp_path / 'secrets.db'}"
    run("optimize", "--study", "private", "--storage", storage, "--trials", "2", *tiny_search(sst2))
    chosen = run("select", "--study", "private", "--storage", storage, "--out", str(tmp_path / "s.json"))
    public = f"{sst2 / 'dev.tsv'}[1000:]"  # needed when the chosen setting is homophonic
    run("keygen", "--settings", chosen["out"], "--public-text", public, "--out", str(tmp_path / "owner.key"))
    remember_seed(tmp_path / "owner.key")
    owner_seed = bytes.fromhex(json.loads((tmp_path / "owner.key").read_text())["seed"])

    study = optuna.load_study(study_name="private", storage=optuna_storage(storage))
    config = study_config(study)
    secrets = [owner_seed]
    for trial in study.trials:  # each trial's (measurement) key seed
        settings = TrialSettings.from_dict(trial.user_attrs["settings"])
        secrets.append(trial_key_seed(measurement_seed(config.seed, settings)))
    assert all(len(secret) == 32 for secret in secrets)
    fingerprints = [t.user_attrs["key_fingerprint"] for t in study.trials]
    assert all(len(f) == 16 for f in fingerprints)

    service = Service(storage, tmp_path)
    try:
        paths = [
            "/targets",
            "/targets/private",
            "/targets/private/selection",
            "/targets/private/selections",
            "/studies",
            "/schedules",
            "/health",
            "/openapi.json",
        ]
        responses = [service.client.get(path).text for path in paths]
    finally:
        service.stop()
    database = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("secrets.db"))
    assert fingerprints[0].encode() in database  # the scan does see what is stored...
    for secret in secrets:  # ...and no key seed is among it, raw or as hex
        assert secret not in database and secret.hex().encode() not in database
        assert all(secret.hex() not in text for text in responses)
