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


class Heartbeat:
    """Log "<label>: still running, N s" every `every_seconds` while a long call gives no progress of its own.

    For stretches that report nothing until they end (one generation batch, a model load, a few
    forwards): the run log never stays silent longer than `every_seconds`. The lines come from a
    daemon thread that stops when the block exits, whatever way it exits.
    """

    def __init__(self, label: str, log: Callable[[str], None], *, every_seconds: float = 10.0):
        import threading

        self.label = label
        self.log = log
        self.every_seconds = every_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat: {label}", daemon=True)
        self.started = 0.0

    def _beat(self) -> None:
        while not self._stop.wait(self.every_seconds):
            self.log(f"{self.label}: still running, {time.monotonic() - self.started:.0f} s")

    def __enter__(self) -> "Heartbeat":
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
