"""Running the real service in a subprocess on 127.0.0.1 for tests, and a tiny target to give it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.waiting import Patience, wait_process


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


SST2 = Path(os.environ.get("SHAKETUNE_SST2", Path(__file__).resolve().parents[2] / "shared/data/sst2"))


class Service:
    """``shaketune serve`` as a child process; ``stop()`` ends it (SIGTERM or SIGKILL).

    The storage URL reaches it through $SHAKETUNE_STORAGE (never the command line); targets may read
    SST-2's directory and ``data_roots``."""

    def __init__(self, storage: str, workdir: Path, data_roots: tuple[Path, ...] = (), **env: str) -> None:
        self.storage, self.workdir = storage, workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "SHAKETUNE_LOG_DIR": str(workdir / "logs"),
            "HF_HUB_OFFLINE": "1",
            "SHAKETUNE_STORAGE": storage,
            **env,
        }
        roots = [arg for root in (SST2, *data_roots) for arg in ("--data-root", str(root))]
        self.log = (workdir / f"serve-{self.port}.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "adaptive", "serve", "--port", str(self.port), *roots],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
        )
        self.client = httpx.Client(base_url=self.url, timeout=30)
        patience = Patience(60)
        while True:
            try:
                if self.client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or patience.exhausted:
                raise RuntimeError(
                    f"service did not start: {(workdir / f'serve-{self.port}.log').read_text()}"
                )
            time.sleep(0.3)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            wait_process(self.process, 30)
        self.client.close()
        self.log.close()

    def wait_for(
        self, study: str, states: tuple[str, ...] = ("succeeded", "failed", "cancelled"), timeout: float = 300
    ):
        patience = Patience(timeout)
        while not patience.exhausted:
            body = self.client.get(f"/studies/{study}").json()
            if body["state"] in states:
                return body
            time.sleep(1)
        raise TimeoutError(f"study {study} still {body['state']} after {timeout} s (scaled by load)")


def tiny_target(name: str, sst2: Path, trials: int = 2, **extra: object) -> dict:
    """A target at the smallest fidelity: 32 training sentences, 24 to evaluate, 2 tuning steps; no
    leakage cap (nothing at this fidelity is under the default cap, so every trial would stop early)
    unless ``extra`` gives caps."""
    return {
        "name": name,
        "caps": {"max_leakage": None},
        "task": {
            "train": str(sst2 / "train.tsv"),
            "eval": f"{sst2 / 'dev.tsv'}[0:24]",
            "public": f"{sst2 / 'dev.tsv'}[1000:]",
        },
        "search": {
            "trials": trials,
            "seed": 1,
            "fidelity": {"train_size": 32, "max_length": 16},
            "space": {
                "steps": [2],
                "learning_rates": [1e-4],
                "batch_size": 8,
                "recovery_steps": [0],  # recovery training is searched in tests/test_search.py
                "max_shares": [1.0],
                "substitute": [False],  # substitution is searched in tests/test_search.py
                "mix": [False],  # mixing's space: tests/test_search.py
            },
        },
        **extra,
    }


@contextlib.contextmanager
def serve_in_thread(app) -> Iterator[str]:
    """An ASGI app served by uvicorn in a thread of this process on 127.0.0.1; yields its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    patience = Patience(30)
    while not server.started:
        if not thread.is_alive() or patience.exhausted:
            raise RuntimeError("the in-process server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def sst2_task(sst2: Path, eval_rows: int = 32):
    """An in-process task on SST-2: train.tsv private, the first ``eval_rows`` of dev.tsv to evaluate,
    dev.tsv[1000:] public."""
    from objectives.task import DataSource, TaskSpec

    return TaskSpec(
        DataSource(str(sst2 / "train.tsv")),
        DataSource(str(sst2 / "dev.tsv"), 0, eval_rows),
        DataSource(str(sst2 / "dev.tsv"), 1000),
    )


def tiny_space(steps: int = 2, learning_rate: float = 1e-4):
    """A search space of gaussian noise alone, full tuning at one budget, 1:1 keys, no substitution or
    mixing (their mechanisms take seconds to build; tested in their own files)."""
    from adaptive.space import SearchSpace

    return SearchSpace(
        operators=("gaussian",), steps=(steps,), learning_rates=(learning_rate,), modes=("full",),
        batch_size=8, recovery_steps=(0,), max_shares=(1.0,), substitute=(False,), mix=(False,),
    )  # fmt: skip
