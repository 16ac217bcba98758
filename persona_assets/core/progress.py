"""Progress of long loops as log lines: done/total, rate and ETA, at most every few seconds."""

from __future__ import annotations

import time
from collections.abc import Callable


class ProgressReporter:
    def __init__(self, label: str, log: Callable[[str], None], *, every_seconds: float = 5.0, unit: str = "items"):
        self.label = label
        self.log = log
        self.every_seconds = every_seconds
        self.unit = unit
        self.started = time.monotonic()
        self.last_report = -float("inf")

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last_report < self.every_seconds:
            return
        self.last_report = now
        elapsed = now - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else float("nan")
        self.log(
            f"{self.label}: {done}/{total} {self.unit} ({100 * done / max(total, 1):.0f}%), "
            f"{rate:.2f} {self.unit}/s, elapsed {elapsed:.0f}s, ETA {eta:.0f}s"
        )
