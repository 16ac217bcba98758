"""Delivery of alerts (failed checks) to the configured sinks: a JSON-lines file and a webhook.

The Dagster log is written by the sensor itself; this module has no Dagster import so the
delivery logic can be tested on its own.
"""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DeliveryResult:
    sink: str
    delivered: bool
    attempts: int
    error: str | None = None


def append_jsonl(path: Path, record: dict[str, Any]) -> DeliveryResult:
    path.parent.mkdir(parents=True, exist_ok=True)
    # One write of one line in append mode: concurrent appenders do not interleave lines.
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")
    return DeliveryResult("jsonl", True, 1)


def post_webhook(
    url: str, record: dict[str, Any], *, attempts: int = 3, timeout_s: float = 5.0, backoff_s: float = 0.5
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
            time.sleep(backoff_s * attempt)
    return DeliveryResult("webhook", False, attempts, error)


def deliver(record: dict[str, Any], *, jsonl_path: Path | None, webhook_url: str) -> list[DeliveryResult]:
    results = []
    if webhook_url:
        results.append(post_webhook(webhook_url, record))
    if jsonl_path is not None:
        delivered = {r.sink: r.delivered for r in results}
        results.append(append_jsonl(jsonl_path, {**record, "delivery": delivered}))
    return results
