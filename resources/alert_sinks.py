"""Where alerts about failed checks go: a JSON-lines file (always) and a webhook (when set)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from persona_assets.runs.alerts import WebhookPolicy
from resources.results import ResultsStore


class AlertSinks(dg.ConfigurableResource):
    """The alert sensor's sinks and how hard it tries the webhook."""

    results: ResultsStore
    jsonl_file: str = Field("", description="JSON-lines file of alerts; empty = <data_dir>/alerts.jsonl")
    webhook_url: str = Field("", description="POST each alert as JSON here; empty = no webhook")
    attempts: int = Field(3, ge=1, description="webhook tries per alert (≥ 1)")
    timeout_s: float = Field(
        5.0, gt=0, allow_inf_nan=False, description="timeout of each webhook socket operation, seconds (> 0)"
    )
    backoff_s: float = Field(
        0.5, ge=0, allow_inf_nan=False, description="wait backoff_s × k after the k-th failed try, seconds (≥ 0)"
    )

    @property
    def jsonl_path(self) -> Path:
        return (
            Path(self.jsonl_file).expanduser().resolve() if self.jsonl_file else self.results.data_path / "alerts.jsonl"
        )

    @property
    def policy(self) -> WebhookPolicy:
        return WebhookPolicy(attempts=self.attempts, timeout_s=self.timeout_s, backoff_s=self.backoff_s)
