"""The HTTP service on a real server process: targets, studies in background workers, selections,
schedules that survive a restart, and clear 4xx answers to bad requests."""

import json
import time
from datetime import datetime, timezone

import pytest

from adaptive.cli import app
from adaptive.study import DEFAULT_MAX_LEAKAGE
from tests.cli import remember_seed, run, runner
from tests.service import SST2, Service, tiny_target
from tests.waiting import Patience


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("service")
    server = Service(f"sqlite:///{workdir / 'service.db'}", workdir)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def finished_study(service, sst2):
    assert service.client.post("/targets", json=tiny_target("sst2-tiny", sst2)).status_code == 201
    missing = service.client.get("/targets/sst2-tiny/selection")
    assert missing.status_code == 404 and "no selected settings yet" in missing.json()["message"]
    started = service.client.post("/studies", json={"target": "sst2-tiny"})
    assert started.status_code == 202 and started.json()["state"] == "queued"
    return service.wait_for(started.json()["study"])


def test_round_trip_register_study_select(service, finished_study, tmp_path):
    assert finished_study["state"] == "succeeded", finished_study
    assert finished_study["trials_done"] == 2 and finished_study["best_feasible"] is not None
    selection = service.client.get("/targets/sst2-tiny/selection")
    assert selection.status_code == 200
    body = selection.json()
    assert body["study"] == finished_study["study"] and body["decision"] == "selected"
    assert body["reason"].startswith("first selection")
    assert "NO LEAKAGE CAP" in body["reason"]  # the tiny target opted out of the default cap
    assert body["leakage_measure"] == "bound" and body["leakage_objective"] == "sensitive"
    assert body["leakage"] == max(body["leakage_bound_rare"], body["canary_recovery"])
    assert body["leakage_bound"] >= body["leakage_attacks"] and body["strongest_bound_attack"]
    assert body["leakage_summary"].startswith("bound on rare tokens")
    assert "all tokens: bound" in body["leakage_summary"]  # the all-token figure beside them
    assert "seed" not in json.dumps(body)  # settings only: no key material is ever served
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(body["settings"]))
    run("keygen", "--settings", str(settings), "--out", str(tmp_path / "owner.key"))  # a client makes its key
    remember_seed(tmp_path / "owner.key")


def test_a_target_without_caps_gets_the_default_leakage_cap(service, sst2):
    body = tiny_target("capped-by-default", SST2)
    del body["caps"]
    created = service.client.post("/targets", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["caps"]["max_leakage"] == DEFAULT_MAX_LEAKAGE


def test_reoptimise_warm_starts_and_records_its_decision(service, finished_study):
    started = service.client.post("/targets/sst2-tiny/reoptimise", json={"trials": 1})
    assert started.status_code == 202
    done = service.wait_for(started.json()["study"])
    assert done["state"] == "succeeded" and done["warm_start_from"] == finished_study["study"]
    history = service.client.get("/targets/sst2-tiny/selections").json()
    assert len(history) == 2 and history[1]["reason"]
    # the warm start replays the previous best exactly, so nothing better can appear in one trial
    assert history[1]["decision"] == "kept" and history[1]["reason"].startswith("kept trial")


def test_bad_requests_get_clear_4xx_and_the_service_keeps_serving(service):
    client = service.client
    cases = [
        (client.get("/targets/unknown/selection"), 404, "no target named 'unknown'"),
        (client.post("/studies", json={"target": "unknown"}), 404, "no target named 'unknown'"),
        (client.post("/schedules", json={"target": "sst2-tiny", "cron": "every day"}), 400, "malformed cron"),
        (
            client.post("/schedules", json={"target": "sst2-tiny"}),
            422,
            "exactly one of cron or interval_seconds",
        ),
        (
            client.post(
                "/targets",
                json={
                    "name": "x",
                    "task": {"train": "a", "eval": "b", "public": "c"},
                    "caps": {"max_leakage": -0.5},
                },
            ),
            422,
            "caps.max_leakage: Input should be greater than or equal to 0",
        ),
        (
            client.post(
                "/targets", content=b"{" + b" " * 70_000 + b"}", headers={"content-type": "application/json"}
            ),
            413,
            "larger than",
        ),
        (
            client.post("/targets", content=b"not json", headers={"content-type": "application/json"}),
            422,
            "invalid request",
        ),
        (client.post("/studies/nope/cancel"), 404, "no run with study 'nope'"),
        (client.delete("/schedules/nope"), 404, "no schedule 'nope'"),
        (client.get("/no/such/path"), 404, "no such path"),
        (client.delete("/health"), 405, "method not allowed"),
        (
            client.post("/targets", content=b'{"name": ', headers={"content-type": "application/json"}),
            422,
            "body: malformed JSON at character 9",
        ),
        (client.post("/schedules", json={"target": "sst2-tiny", "every": 1e12}), 422, "less than or equal"),
        (
            client.post("/targets", json={**tiny_target("big-seed", SST2), "search": {"seed": 10**23}}),
            422,
            "search.seed: Input should be less than 2147483648",
        ),
    ]
    for response, code, message in cases:
        assert response.status_code == code, response.text
        assert message in response.json()["message"]
        assert "Traceback" not in response.text
    assert client.get("/health").json()["status"] == "ok"
    every = client.post("/schedules", json={"target": "sst2-tiny", "every": 3600})  # the CLI's word works too
    assert every.status_code == 201 and every.json()["trigger"] == "every 3600 s"
    assert client.delete(f"/schedules/{every.json()['id']}").status_code == 204


def test_serve_with_an_unreachable_database_says_so_without_a_traceback():
    result = runner.invoke(app, ["serve", "--storage", "postgresql+psycopg://nobody@127.0.0.1:1/none"])
    assert result.exit_code == 1 and "cannot open storage" in result.stderr
    assert "Traceback" not in result.output


def test_openapi_is_published(service):
    schema = service.client.get("/openapi.json").json()
    assert {
        "/health",
        "/targets",
        "/targets/{name}/selection",
        "/studies",
        "/studies/{study}/cancel",
        "/schedules",
    } <= set(schema["paths"])


def test_schedule_survives_a_restart_and_fires(tmp_path, sst2):
    storage = f"sqlite:///{tmp_path / 'scheduled.db'}"
    first = Service(storage, tmp_path)
    assert first.client.post("/targets", json=tiny_target("nightly", sst2, trials=1)).status_code == 201
    made = first.client.post("/schedules", json={"target": "nightly", "interval_seconds": 8})
    assert made.status_code == 201
    first.stop()  # before the first firing
    restarted_at = datetime.now(timezone.utc)
    second = Service(storage, tmp_path)
    try:
        listed = second.client.get("/schedules").json()
        assert [s["id"] for s in listed] == [made.json()["id"]]
        patience = Patience(60)
        scheduled = []
        while not scheduled and not patience.exhausted:
            scheduled = [s for s in second.client.get("/studies").json() if s["kind"] == "scheduled"]
            time.sleep(0.5)
        assert scheduled, "the schedule did not fire after the restart"
        created = datetime.fromisoformat(scheduled[0]["created_at"]).replace(tzinfo=timezone.utc)
        assert created >= restarted_at.replace(microsecond=0)
        assert second.client.delete(f"/schedules/{made.json()['id']}").status_code == 204
        assert second.wait_for(scheduled[0]["study"])["state"] == "succeeded"
        assert second.client.get("/targets/nightly/selection").status_code == 200
    finally:
        second.stop()


def test_a_token_protects_everything_but_health(tmp_path, monkeypatch):
    token = "s3cret-token-0123456789"
    monkeypatch.setenv("SHAKETUNE_API_TOKEN", token)
    server = Service(f"sqlite:///{tmp_path / 'token.db'}", tmp_path)
    try:
        assert server.client.get("/health").status_code == 200
        refused = server.client.get("/targets")
        assert refused.status_code == 401 and refused.json()["message"] == "missing or wrong bearer token"
        assert server.client.get("/targets", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert server.client.get("/targets", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert server.client.get("/targets", headers={"Authorization": f"bearer {token}"}).status_code == 200
        assert server.client.get("/docs").status_code == 200  # the documentation needs no token
        assert server.client.get("/redoc").status_code == 200
    finally:
        server.stop()
