"""No key and no key seed ever reaches the database or an API response: only fingerprints do."""

import json
from types import SimpleNamespace

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


SECRET_URL = "postgresql+psycopg://shaketune:pw-not-shown@db.example/shaketune"


def test_a_run_worker_gets_the_storage_url_in_its_environment_not_its_arguments(tmp_path, monkeypatch):
    from adaptive import runs

    started = {}

    class Started:
        def __init__(self, command, **options):
            started.update(command=command, env=options["env"])

        def poll(self):
            return 0

    monkeypatch.setattr(runs.subprocess, "Popen", Started)
    monkeypatch.setenv("SHAKETUNE_LOG_DIR", str(tmp_path))
    runs.launch(7, SECRET_URL)
    runs.reap_children()
    assert started["command"][-2:] == ["run-job", "7"]  # anyone may read a process's arguments
    assert not any("pw-not-shown" in part for part in started["command"])
    assert started["env"]["SHAKETUNE_STORAGE"] == SECRET_URL  # only its owner its environment


def test_schedules_store_no_storage_url(tmp_path, monkeypatch):
    from apscheduler.triggers.interval import IntervalTrigger
    from sqlalchemy import text

    from adaptive import scheduler as schedules
    from storage.engine import get_engine
    from storage.repository import Repository

    url = f"sqlite:///{tmp_path / 'schedules.db'}"
    Repository(url).ensure_target("t", "m", {}, "0" * 64)
    made = schedules.make_scheduler(url, running=False)
    try:
        added = schedules.add_schedule(made, url, "t", None, 3600)
        made.add_job(  # as jobs were stored before: the full URL
            "adaptive.scheduler:fire",
            IntervalTrigger(hours=1),
            kwargs={"target": "t", "url": SECRET_URL},
            id="older",
            jobstore="default",
        )
    finally:
        made.shutdown(wait=False)
    made = schedules.make_scheduler(url, running=False)  # rewrites the older job
    try:
        stored = {job.id: job.kwargs for job in made.get_jobs(jobstore="default")}
    finally:
        made.shutdown(wait=False)
    assert stored[added.id] == {"target": "t", "trigger": "every 3600 s"}
    assert set(stored["older"]) == {"target", "trigger"}  # the older job's URL is gone
    with get_engine(url).connect() as connection:
        states = connection.execute(text("SELECT job_state FROM shaketune_schedules")).scalars().all()
    assert len(states) == 2 and not any(b"pw-not-shown" in state for state in states)

    used = []  # a job fires on the full URL of the service running it
    monkeypatch.setattr(schedules, "_service_url", SECRET_URL)
    monkeypatch.setattr(schedules, "Repository", lambda given: used.append(given))
    monkeypatch.setattr(schedules, "queue_run", lambda *_: SimpleNamespace(id=1, study_name="t-2"))
    monkeypatch.setattr(schedules, "launch", lambda run_id, given: used.append(given))
    schedules.fire("t", trigger="every 3600 s")
    assert used == [SECRET_URL, SECRET_URL]
