"""Waiting on events with a limit that stretches with the machine's load, so a busy machine gives a slow
green run rather than a red one; the limit only catches what never happens."""

from __future__ import annotations

import os
import time

PATIENCE_ENV = "SHAKETUNE_TEST_PATIENCE"  # a further factor on every limit (default 1)


def busy_factor() -> float:
    """How many times slower than an idle machine this one runs now: the 1-minute load per core, at
    least 1, times $SHAKETUNE_TEST_PATIENCE."""
    cores = os.cpu_count() or 1
    return max(1.0, os.getloadavg()[0] / cores) * float(os.environ.get(PATIENCE_ENV, "1"))


class Patience:
    """A limit of ``seconds`` on an idle machine, re-scaled by the load each time it is asked."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.started = seconds, time.monotonic()

    @property
    def exhausted(self) -> bool:
        return time.monotonic() - self.started > self.seconds * busy_factor()


def wait_process(process, seconds: float, every: float = 0.5) -> int:
    """``process.wait()`` with a patient limit; its return code (TimeoutError when it never ends)."""
    patience = Patience(seconds)
    while process.poll() is None:
        if patience.exhausted:
            raise TimeoutError(f"process {process.pid} still running after {seconds:g} s (scaled by load)")
        time.sleep(every)
    return process.returncode
