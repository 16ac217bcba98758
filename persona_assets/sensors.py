"""Alerts when an asset check fails.

Open-source Dagster has no asset-check sensor, and non-blocking failures leave the run green, so
one cursor-based sensor polls the check history of every check and alerts once per failed
evaluation (blocking and non-blocking alike; a blocking failure also fails its run). The cursor
holds, per check, the storage id of the last evaluation seen, so each failure alerts exactly once.

Sinks: the Dagster log (always), an append-only JSON-lines file (PERSONA_ALERTS_FILE, default
<data dir>/alerts.jsonl) and a webhook when PERSONA_ALERT_WEBHOOK_URL is set.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from persona_assets.checks import all_checks, legacy_checks
from persona_assets.core.alerts import deliver
from persona_assets.storage import data_dir

FAILED_STATUSES = {AssetCheckExecutionRecordStatus.FAILED}


def alerts_file() -> Path:
    return Path(os.environ.get("PERSONA_ALERTS_FILE") or data_dir() / "alerts.jsonl")


def monitored_check_keys() -> list[dg.AssetCheckKey]:
    return [key for checks_def in [*all_checks, *legacy_checks] for key in checks_def.check_keys]


@dg.sensor(minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING)
def failed_check_alerts(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    """Alert once per failed asset-check evaluation (Dagster log, JSON-lines file, optional webhook)."""
    cursor = json.loads(context.cursor) if context.cursor else {}
    storage = context.instance.event_log_storage
    sent = 0
    for key in monitored_check_keys():
        name = key.to_user_string()
        last_seen = cursor.get(name, 0)
        history = storage.get_asset_check_execution_history(key, limit=50)
        new_records = sorted((r for r in history if r.id > last_seen), key=lambda r: r.id)
        for record in new_records:
            if record.status in FAILED_STATUSES:
                evaluation = record.event.asset_check_evaluation if record.event else None
                alert = {
                    "check": name,
                    "status": record.status.value,
                    "run_id": record.run_id,
                    "storage_id": record.id,
                    "severity": evaluation.severity.value if evaluation else None,
                    "description": evaluation.description if evaluation else None,
                    "timestamp": record.create_timestamp,
                }
                context.log.error(f"ALERT: check {name} {record.status.value} in run {record.run_id}")
                for result in deliver(alert, jsonl_path=alerts_file(), webhook_url=os.environ.get("PERSONA_ALERT_WEBHOOK_URL", "")):
                    if not result.delivered:
                        context.log.warning(f"alert for {name} not delivered to {result.sink} after {result.attempts} tries: {result.error}")
                sent += 1
        if new_records:
            cursor[name] = new_records[-1].id
    context.update_cursor(json.dumps(cursor, sort_keys=True))
    return dg.SkipReason(f"{sent} alert(s) sent" if sent else "no new failed checks")
