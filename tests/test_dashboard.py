"""The dashboard in a real browser: headless Chromium renders a stored study's Pareto front with the
three objectives named."""

import shutil
import subprocess
import sys
import time

import httpx
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial

from adaptive.study import StudyConfig, open_study
from objectives.task import DataSource, TaskSpec
from storage.engine import optuna_storage
from tests.service import free_port
from tests.waiting import Patience, wait_process

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1400",
    "--virtual-time-budget=15000",
]


@pytest.fixture()
def dashboard(tmp_path):
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    task = TaskSpec(DataSource("train.tsv"), DataSource("eval.tsv"), DataSource("public.tsv"))
    study = open_study("reviewed", optuna_storage(url), StudyConfig("m", task))
    for accuracy, cost, leakage in ((0.81, 6000, 1.0), (0.75, 3000, 0.6), (0.63, 3100, 0.26)):
        study.add_trial(
            create_trial(
                values=[accuracy, cost, leakage],
                params={"coverage": 1.0},
                distributions={"coverage": FloatDistribution(0, 1)},
            )
        )
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "adaptive", "dashboard", "--storage", url, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    patience = Patience(30)
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/studies").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.3)
        assert process.poll() is None and not patience.exhausted, "dashboard did not start"
    study_id = optuna_storage(url).get_study_id_from_name("reviewed")
    yield f"http://127.0.0.1:{port}/dashboard/studies/{study_id}"
    process.terminate()
    wait_process(process, 10)


def test_chromium_renders_the_pareto_front(dashboard, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is missing: `make test` installs it (Debian package chromium)"
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, *profile, "--dump-dom", dashboard],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "Pareto Front" in dom
    assert all(name in dom for name in ("accuracy", "cost_gflops")), "objective names not shown"
    assert "<svg" in dom  # the plotly chart was drawn
    screenshot = tmp_path / "pareto.png"
    subprocess.run(
        [chromium, *CHROMIUM_FLAGS, *profile, f"--screenshot={screenshot}", dashboard],
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert screenshot.stat().st_size > 20_000


def test_api_docs_render_offline_with_every_endpoint(tmp_path):
    """Swagger UI's files come from an installed package, not a CDN: the page lists the endpoints with
    no network (headless Chromium's other connections are off too)."""
    from adaptive.service.app import ServiceSettings, create_app
    from tests.service import serve_in_thread

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is missing: `make test` installs it (Debian package chromium)"
    app = create_app(ServiceSettings(f"sqlite:///{tmp_path / 'docs.db'}", "a-token-of-16-chars-or-more"))
    with serve_in_thread(app) as base:
        page = httpx.get(f"{base}/docs").text
        assert "cdn" not in page.lower() and "/static-offline-docs/swagger-ui-bundle.js" in page
        dom = subprocess.run(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={tmp_path / 'profile'}",
                "--dump-dom",
                f"{base}/docs",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    for path in ("/targets/{name}/selection", "/studies/{study}/cancel", "/schedules/{schedule_id}"):
        assert path in dom, f"{path} not rendered by Swagger UI"
