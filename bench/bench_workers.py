"""Benchmark: trials per hour with 1 and 2 workers sharing one study, on PostgreSQL and on SQLite.

At the smallest fidelity (32 private sentences, 24 to evaluate, 2 tuning steps), a study with a budget
of N trials is run by 1 worker using both cores, then by 2 workers with one torch thread each, on a fresh
database each time; printed: trials per hour and the 2-worker / 1-worker ratio per backend.

    .venv/bin/python bench/bench_workers.py [--trials 16] [--sst2 ../shared/data/sst2]
      [--postgres postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def shaketune(*args: str, **popen: object) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "adaptive", *args], env=env, **popen)


def create_study(storage: str, sst2: Path) -> None:
    process = shaketune(
        "optimize",
        "--study",
        "bench",
        "--storage",
        storage,
        "--trials",
        "0",
        "--json",
        "--train",
        str(sst2 / "train.tsv"),
        "--eval",
        f"{sst2 / 'dev.tsv'}[0:24]",
        "--public",
        f"{sst2 / 'dev.tsv'}[1000:]",
        "--train-size",
        "32",
        "--max-length",
        "16",
        "--steps",
        "2",
        "--learning-rates",
        "1e-4",
        "--batch-size",
        "8",
        "--recovery-steps",
        "0",
        "--max-shares",
        "1",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert process.wait() == 0, "could not create the study"


def run_workers(storage: str, workers: int, budget: int) -> float:
    """Seconds until ``workers`` workers have completed the study's budget."""
    threads = str(max(1, (os.cpu_count() or 2) // workers))
    started = time.perf_counter()
    processes = [
        shaketune(
            "worker",
            "--study",
            "bench",
            "--storage",
            storage,
            "--trials",
            str(budget),
            "--threads",
            threads,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    assert all(p.wait() == 0 for p in processes), "a worker failed"
    return time.perf_counter() - started


def postgres_database(admin: str):
    import psycopg

    name = f"shaketune_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"{base}/{name}", drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument(
        "--sst2", type=Path, default=Path(os.environ.get("SHAKETUNE_SST2", "../shared/data/sst2"))
    )
    parser.add_argument("--postgres", default=os.environ.get("SHAKETUNE_TEST_PG", PG_ADMIN))
    args = parser.parse_args()
    print(f"budget {args.trials} trials per study, {os.cpu_count()} cores")
    print(f"{'backend':10s} {'workers':>7s} {'seconds':>8s} {'trials/hour':>12s}")
    for backend in ("postgresql", "sqlite"):
        rates = {}
        for workers in (1, 2):
            if backend == "postgresql":
                storage, cleanup = postgres_database(args.postgres)
            else:
                folder = Path(tempfile.mkdtemp(prefix="shaketune-bench-"))
                storage, cleanup = f"sqlite:///{folder / 'bench.db'}", lambda: None
            try:
                create_study(storage, args.sst2)
                seconds = run_workers(storage, workers, args.trials)
            finally:
                cleanup()
            rates[workers] = args.trials / seconds * 3600
            print(f"{backend:10s} {workers:7d} {seconds:8.1f} {rates[workers]:12.0f}", flush=True)
        print(f"{backend:10s} 2 workers / 1 worker: {rates[2] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
