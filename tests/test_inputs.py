"""Inputs are checked when they arrive: POST /targets refuses, with the precise reason, every source
and model that would fail later or that lies outside the service's data roots; header-less files with
string labels work; a target can be deleted; a run that fails anyway reports its first trial's error;
the CLI creates no study for a task that does not load, and never quotes a private row."""

import json

import pytest
from fastapi.testclient import TestClient

from adaptive.cli import app
from adaptive.runs import execute_run
from adaptive.service.app import ServiceSettings, create_app
from tests.cli import run, runner

NEWS = [
    ("Sports", "match report"),
    ("World", "summit notes"),
    ("Business", "quarterly figures"),
    ("Sci/Tech", "new chip design"),
]


def news_rows(start: int, count: int) -> str:
    return "".join(f"{NEWS[i % 4][0]}\t{NEWS[i % 4][1]} number {i}\n" for i in range(start, start + count))


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    root = tmp_path_factory.mktemp("roots")
    (root / "train.tsv").write_text(news_rows(0, 40))  # no header line: label, text
    (root / "dev.tsv").write_text(news_rows(1000, 16))
    (root / "public.tsv").write_text(news_rows(2000, 40))
    (root / "empty.tsv").write_text("")
    (root / "binary.tsv").write_bytes(b"\x00\x01\x02\x03" * 100)
    (root / "three.tsv").write_text(news_rows(3000, 3))
    (root / "dir").mkdir()
    (root / "zero.tsv").symlink_to("/dev/zero")  # a link out of the roots is judged by its target
    (root / "passwd.tsv").symlink_to("/etc/passwd")
    return root


@pytest.fixture(scope="module")
def client(roots):
    url = f"sqlite:///{roots / 'inputs.db'}"
    app = create_app(ServiceSettings(url, None, (roots,)), launcher=lambda run_id, _url: None)
    with TestClient(app) as client:
        yield client


def target(roots, name="news", **task):
    return {
        "name": name,
        "task": {
            "train": str(roots / "train.tsv"),
            "eval": str(roots / "dev.tsv"),
            "public": str(roots / "public.tsv"),
            "text_column": 1,
            "label_column": 0,
            "header": False,
            **task,
        },
        "search": {
            "trials": 1,
            "fidelity": {"train_size": 16, "max_length": 16},
            "space": {"steps": [1], "recovery_steps": [0], "max_shares": [1.0]},
        },
    }


def test_a_header_less_corpus_with_string_labels_registers_and_can_be_deleted(client, roots):
    made = client.post("/targets", json=target(roots))
    assert made.status_code == 201, made.text
    assert made.json()["task"]["header"] is False and made.json()["task"]["text_column"] == "1"
    assert client.delete("/targets/news").status_code == 204
    assert client.get("/targets/news").status_code == 404
    assert client.delete("/targets/news").status_code == 404


@pytest.mark.parametrize(
    ("task", "model", "status", "reason"),
    [
        ({"train": "/etc/passwd"}, None, 400, "outside the data roots"),
        ({"train": "/etc/shadow"}, None, 400, "outside the data roots"),
        ({"train": "/dev/zero"}, None, 400, "outside the data roots"),
        ({"train": "{root}/zero.tsv"}, None, 400, "outside the data roots"),
        ({"public": "{root}/passwd.tsv"}, None, 400, "outside the data roots"),
        ({"train": "{root}/dir"}, None, 400, "is not a regular file"),
        ({"train": "{root}/empty.tsv"}, None, 400, "is empty"),
        ({"train": "{root}/binary.tsv"}, None, 400, "is a binary file"),
        ({"train": "{root}/missing.tsv"}, None, 400, "data file not found"),
        ({"train": "hf:nonexistent:x:y"}, None, 400, "cannot load hub dataset"),
        # a hub source never names a local directory, inside the roots or out (issue 26, item 1)
        ({"train": "hf:/etc:train"}, None, 400, "not a local path"),
        ({"train": "hf:{root}:train[100000:]"}, None, 400, "not a local path"),
        ({"train": "hf:../../etc:train"}, None, 400, "not a local path"),
        ({"public": "hf:~/x:train"}, None, 400, "not a local path"),
        ({"train": "{root}/train.tsv[abc]"}, None, 400, "malformed row range"),
        ({"train": "{root}/train.tsv[5:2]"}, None, 400, "selects no rows"),
        ({"train": "{root}/train.tsv[0:0]"}, None, 400, "selects no rows"),
        ({"train": "{root}/three.tsv"}, None, 400, "selects 3 rows; at least 4"),
        ({"eval": "{root}/train.tsv[0:8]", "train": "{root}/train.tsv[8:]"}, None, 200, ""),
        ({"public": "{root}/train.tsv"}, None, 400, "repeats private training rows: 40 of its 40"),
        ({"text_column": "sentence"}, None, 400, "no header line, so its columns have no names"),
        ({"text_column": 7}, None, 400, "there is no column at position 7"),
        # positions on a file read with a header line: its first private row would become the header
        ({"header": True}, None, 400, "is read with a header line, so its columns go by name"),
        ({"text_column": 0, "label_column": 1}, None, 400, "are the text and label columns swapped?"),
        ({"train": ""}, None, 422, "String should have at least 1 character"),
        ({}, "{root}/no-such-model", 400, "model directory not found"),
        ({}, "/opt/some-model", 400, "outside the data roots"),
    ],
)
def test_bad_inputs_are_refused_with_the_reason(client, roots, task, model, status, reason):
    body = target(
        roots,
        name="bad",
        **{k: v.replace("{root}", str(roots)) if isinstance(v, str) else v for k, v in task.items()},
    )
    if model:
        body["model"] = model.replace("{root}", str(roots))
    answer = client.post("/targets", json=body)
    if status == 200:
        assert answer.status_code == 201, answer.text
        assert client.delete("/targets/bad").status_code == 204
        return
    assert answer.status_code == status, answer.text
    assert reason in answer.json()["message"]
    assert "number" not in answer.text  # no data row is ever quoted
    assert client.get("/targets/bad").status_code == 404


def test_a_failing_run_reports_why(client, roots):
    assert client.post("/targets", json=target(roots, name="breaks")).status_code == 201
    started = client.post("/studies", json={"target": "breaks"}).json()
    (roots / "train.tsv").rename(roots / "train.tsv.bak")  # the data vanishes after registration
    try:
        url = f"sqlite:///{roots / 'inputs.db'}"
        with pytest.raises(Exception, match="data file not found"):  # the worker checks before any trial
            execute_run(started["run"], url)
        shown = client.get(f"/studies/{started['study']}").json()
        assert shown["state"] == "failed" and "data file not found" in shown["message"]
        failed = runner.invoke(app, ["reoptimise", "breaks", "--storage", url, "--json"])
        assert "data file not found" in json.loads(failed.stdout.strip().splitlines()[-1])["error"]
    finally:
        (roots / "train.tsv.bak").rename(roots / "train.tsv")


def test_optimize_creates_no_study_until_the_task_loads(roots, tmp_path):
    storage = f"sqlite:///{tmp_path / 'cli.db'}"
    data = [
        f"--train={roots / 'train.tsv'}",
        f"--eval={roots / 'dev.tsv'}",
        f"--public={roots / 'public.tsv'}",
    ]
    refused = run("optimize", "--study", "news", "--storage", storage, "--trials", "0", *data, ok=False)
    assert "no column 'sentence'" in refused["error"] and "--no-header" in refused["error"]
    assert "number" not in refused["error"] and "Sports" not in refused["error"]  # no private row
    assert run("studies", "--storage", storage)["studies"] == []  # nothing burnt
    made = run(
        "optimize",
        "--study",
        "news",
        "--storage",
        storage,
        "--trials",
        "0",
        *data,
        "--no-header",
        "--text-column",
        "1",
        "--label-column",
        "0",
    )
    assert made["trials"] == 0
    assert run("studies", "--storage", storage)["studies"][0]["study"] == "news"


def test_a_hub_name_that_is_also_a_local_directory_is_never_read(tmp_path, monkeypatch):
    """``datasets`` would read a local directory named like the dataset: refused, in the words of any
    failure to load, so the answer tells nothing of what lies there."""
    from objectives.data import DataError
    from objectives.task import DataSource

    (tmp_path / "glue").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as local:
        DataSource.parse("hf:glue:sst2:train").load()
    with pytest.raises(DataError) as missing:
        DataSource.parse("hf:no-such-set:sst2:train").load()
    assert str(local.value).replace("glue", "X") == str(missing.value).replace("no-such-set", "X")


def test_a_changed_task_is_refused_with_both_descriptions_told_apart(client, roots):
    assert client.post("/targets", json=target(roots, name="twice")).status_code == 201
    try:
        for name, start, count in (("train", 0, 40), ("dev", 1000, 16), ("public", 2000, 40)):
            (roots / f"headed-{name}.tsv").write_text("label\tsentence\n" + news_rows(start, count))
        files = {
            key: str(roots / f"headed-{name}.tsv") for key, name in (("train", "train"), ("eval", "dev"))
        }
        other = target(roots, name="twice", **files, public=str(roots / "headed-public.tsv"))
        other["task"].update(header=True, text_column="sentence", label_column="label")
        answer = client.post("/targets", json=other)
        assert answer.status_code == 400, answer.text
        message = answer.json()["message"]
        assert "without a header line" in message and "with a header line" in message
        assert "text column '1'" in message and "text column 'sentence'" in message
    finally:
        client.delete("/targets/twice")


def test_http_details_a_client_relies_on(client, roots):
    """Issue 26 (8): HEAD on GET routes, Allow naming every method of the path, 422 for a body nested
    past the parser, a schedule's trigger marked required in the schema, messages in the API's words."""
    head = client.head("/health")
    assert head.status_code == 200 and head.content == b""
    wrong = client.put("/targets/news")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "DELETE, GET, HEAD"
    nested = '{"name": "x", "task": ' + "[" * 20000 + "]" * 20000 + "}"
    deep = client.post("/targets", content=nested, headers={"content-type": "application/json"})
    assert deep.status_code == 422 and "nested too deeply" in deep.json()["message"]
    schema = client.get("/openapi.json").json()["components"]["schemas"]["ScheduleIn"]
    assert [option["required"] for option in schema["oneOf"]] == [["cron"], ["interval_seconds"]]
    assert client.post("/schedules", json={"target": "news"}).status_code == 422
    refused = client.post("/targets", json=target(roots, name="cli", header=True))
    assert refused.status_code == 400 and "--no-header" not in refused.json()["message"]
    assert '"header": false' in refused.json()["message"]


@pytest.mark.parametrize("change", ["link", "content"])
def test_workers_check_what_they_read_against_the_roots_and_the_registration(client, roots, tmp_path, change):
    """Issue 26 (2): a file registered inside a root, then swapped for a link to a file outside (or
    rewritten), is not read by the worker."""
    swapped = roots / f"swap-{change}.tsv"
    swapped.write_text(news_rows(0, 40))
    assert (
        client.post("/targets", json=target(roots, name=f"swap-{change}", train=str(swapped))).status_code
        == 201
    )
    started = client.post("/studies", json={"target": f"swap-{change}"}).json()
    outside = tmp_path / "outside.tsv"
    outside.write_text(news_rows(5000, 40))
    swapped.unlink()
    if change == "link":
        swapped.symlink_to(outside)
    else:
        swapped.write_text(news_rows(5000, 40))
    reason = "outside the data roots" if change == "link" else "changed since it was registered"
    with pytest.raises(Exception, match=reason):
        execute_run(started["run"], f"sqlite:///{roots / 'inputs.db'}")
    shown = client.get(f"/studies/{started['study']}").json()
    assert shown["state"] == "failed" and reason in shown["message"] and "number" not in shown["message"]
    client.delete(f"/targets/swap-{change}")
