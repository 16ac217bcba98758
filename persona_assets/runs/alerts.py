"""Which check outcomes deserve an alert, and their delivery to the sinks: a JSON-lines file and a webhook.

The Dagster log is written by the sensor itself; this module has no Dagster import so the
delivery logic can be tested on its own. Nothing here raises on a delivery failure: every sink
returns a `DeliveryResult` saying whether it took the alert, after how many tries, and why not.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from persona_assets.runs.storage import exclusive_lock


@dataclass(frozen=True)
class WebhookPolicy:
    """How hard to try a webhook: `attempts` POSTs at most, each bounded by `timeout_s` per socket
    operation (connect, each read), waiting `backoff_s × k` after the k-th failed try."""

    attempts: int = 3
    timeout_s: float = 5.0
    backoff_s: float = 0.5

    def worst_case_s(self) -> float:
        """Longest one delivery can take when the receiver accepts connections but never answers."""
        return self.attempts * self.timeout_s + self.backoff_s * self.attempts * (self.attempts - 1) / 2


@dataclass(frozen=True)
class DeliveryResult:
    sink: str
    delivered: bool
    attempts: int
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        return {"delivered": self.delivered, "attempts": self.attempts, "error": self.error}


# Largest single write() of an alert line. A longer line takes several writes, and so may any line
# whose write returns short; a single O_APPEND write is whole on local Linux filesystems but not on
# NFS or SMB. Writing in bounded pieces makes the directory lock, never a filesystem's append
# semantics, what keeps concurrent runs' lines apart, on every filesystem and provably in the tests.
APPEND_CHUNK_BYTES = 64 * 1024


def append_jsonl(path: Path, record: dict[str, Any]) -> DeliveryResult:
    """Append the alert as one JSON line; an unwritable file is reported, never raised."""
    line = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One line per alert, appended under the directory lock: its pieces must not interleave
        # with another run's (see persona_assets.runs.storage).
        with exclusive_lock(path.parent):
            _append_all(path, line)
    except OSError as exc:
        return DeliveryResult("jsonl", False, 1, f"{type(exc).__name__}: {exc}")
    return DeliveryResult("jsonl", True, 1)


def _append_all(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view[:APPEND_CHUNK_BYTES]) :]
    finally:
        os.close(fd)


def post_webhook(
    url: str,
    record: dict[str, Any],
    *,
    attempts: int = 3,
    timeout_s: float = 5.0,
    backoff_s: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryResult:
    """POST the alert as JSON; retry a bounded number of times, never raise."""
    body = json.dumps(record).encode()
    error = None
    for attempt in range(1, attempts + 1):
        try:
            request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                if 200 <= response.status < 300:
                    return DeliveryResult("webhook", True, attempt)
                error = f"HTTP {response.status}"
        except Exception as exc:  # noqa: BLE001 - any failure is recorded, never raised
            error = f"{type(exc).__name__}: {exc}"
        if attempt < attempts:
            sleep(backoff_s * attempt)
    return DeliveryResult("webhook", False, attempts, error)


def deliver(
    record: dict[str, Any],
    *,
    jsonl_path: Path | None,
    webhook_url: str,
    policy: WebhookPolicy = WebhookPolicy(),
    sleep: Callable[[float], None] = time.sleep,
) -> list[DeliveryResult]:
    """Webhook first, so the JSON line can say whether (and after how many tries) the POST got through."""
    results = []
    if webhook_url:
        results.append(
            post_webhook(
                webhook_url,
                record,
                attempts=policy.attempts,
                timeout_s=policy.timeout_s,
                backoff_s=policy.backoff_s,
                sleep=sleep,
            )
        )
    if jsonl_path is not None:
        delivery = {r.sink: r.summary() for r in results}
        results.append(append_jsonl(jsonl_path, {**record, "delivery": delivery}))
    return results


def recorded_somewhere(results: list[DeliveryResult]) -> bool:
    """True when at least one durable sink (file or webhook) took the alert."""
    return any(r.delivered for r in results)


# ----------------------------------------------------------------- which outcomes deserve an alert
FAILED = "FAILED"
PASSED_AGAIN = "PASSED"


def outcome_signature(*, passed: bool, severity: str, description: str | None, metadata: dict[str, Any]) -> str:
    """What a check said, as a digest: the same check on the same inputs says the same thing.

    The checks' metadata is their evidence (the numbers they judged), computed from the asset's
    value; a re-run on unchanged inputs reproduces it exactly, a run on other inputs does not.
    """
    payload = {"passed": passed, "severity": severity, "description": description, "metadata": metadata}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def changed_outcomes(
    evaluations: list[dict[str, Any]], known: dict[str, dict[str, Any]]
) -> tuple[list[dict[str, Any]], int]:
    """Alerts for the evaluations that change what is known of their check; `known` is updated in place.

    `evaluations` (oldest first) each hold check, passed, signature and what goes into an alert. An
    alert is due when a check fails for the first time, fails with other evidence (other inputs),
    or passes after failing (status PASSED, `was` = the failure it ends). A failure seen before
    with the same evidence (a re-run, the bundled study's historical kill checks) is not alerted
    again. Returns (alerts, number of known failures seen again).
    """
    alerts, repeats = [], 0
    for evaluation in evaluations:
        check = evaluation["check"]
        before = known.get(check)
        state = {"passed": evaluation["passed"], "signature": evaluation["signature"], "run_id": evaluation["run_id"]}
        known[check] = state
        fields = {k: v for k, v in evaluation.items() if k not in ("passed", "signature")}
        if not evaluation["passed"]:
            if before is not None and not before["passed"] and before["signature"] == evaluation["signature"]:
                repeats += 1
                known[check] = before  # the run that was alerted stays the one named
                continue
            reason = "first failure" if before is None or before["passed"] else "failing with other evidence"
            alerts.append({**fields, "status": FAILED, "reason": reason})
        elif before is not None and not before["passed"]:
            reason = f"passes again (failed in run {before['run_id']})"
            alerts.append({**fields, "status": PASSED_AGAIN, "reason": reason})
    return alerts, repeats
