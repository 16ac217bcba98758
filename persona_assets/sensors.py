"""Alerts when an asset check fails.

Open-source Dagster has no asset-check sensor, and non-blocking failures leave the run green, so
one cursor-based sensor polls the check history of every check and alerts once per failed
evaluation (blocking and non-blocking alike; a blocking failure also fails its run). The cursor
holds, per check, the storage id of the last evaluation dealt with, so each failure alerts once.

Sinks: the Dagster log (always), an append-only JSON-lines file (PERSONA_ALERTS_FILE, default
<data dir>/alerts.jsonl) and a webhook when PERSONA_ALERT_WEBHOOK_URL is set (tries, timeout and
backoff: PERSONA_ALERT_WEBHOOK_ATTEMPTS / _TIMEOUT_S / _BACKOFF_S).

When the cursor moves past a record:
- A check's history row is created PLANNED when its run starts and updated in place (same id)
  when the check is evaluated, so the cursor stops before a PLANNED row while its run is still
  going; once the run is over, a row left PLANNED (check skipped) is passed over.
- An alert counts as recorded when the JSON-lines file or the webhook took it (a webhook that is
  down is written to the file as undelivered). If neither took it, the cursor stays before it
  and the next tick tries again; the Dagster log alone does not count.
- A tick stops starting new deliveries once a further worst-case webhook delivery could overrun
  TICK_BUDGET_S (Dagster abandons a sensor evaluation after DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS,
  60 s by default, and an abandoned tick keeps its old cursor, which would repeat the alerts it had
  sent). The rest wait for the next tick.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from persona_assets.checks import all_checks, legacy_checks
from persona_assets.core.alerts import WebhookPolicy, deliver, recorded_somewhere
from persona_assets.storage import data_dir

TICK_BUDGET_S = 40.0


def alerts_file() -> Path:
    return Path(os.environ.get("PERSONA_ALERTS_FILE") or data_dir() / "alerts.jsonl")


def monitored_check_keys() -> list[dg.AssetCheckKey]:
    return [key for checks_def in [*all_checks, *legacy_checks] for key in checks_def.check_keys]


def _alert(name: str, record) -> dict:
    evaluation = record.event.asset_check_evaluation if record.event else None
    return {
        "check": name,
        "status": record.status.value,
        "run_id": record.run_id,
        "storage_id": record.id,
        "severity": evaluation.severity.value if evaluation else None,
        "description": evaluation.description if evaluation else None,
        "timestamp": record.create_timestamp,
    }


@dg.sensor(minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING)
def failed_check_alerts(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    """Alert once per failed asset-check evaluation (Dagster log, JSON-lines file, optional webhook)."""
    # A bad setting fails the tick with the variable's name, before the cursor moves.
    policy = WebhookPolicy.from_env(os.environ)
    webhook_url = os.environ.get("PERSONA_ALERT_WEBHOOK_URL", "")
    cursor = json.loads(context.cursor) if context.cursor else {}
    instance = context.instance
    run_finished: dict[str, bool] = {}

    def still_running(record) -> bool:
        if record.status != AssetCheckExecutionRecordStatus.PLANNED:
            return False
        if record.run_id not in run_finished:
            run = instance.get_run_by_id(record.run_id)
            run_finished[record.run_id] = run is None or run.is_finished
        return not run_finished[record.run_id]

    started = time.monotonic()
    sent, unrecorded, deferred = 0, 0, False
    for key in monitored_check_keys():
        name = key.to_user_string()
        history = instance.event_log_storage.get_asset_check_execution_history(key, limit=50)
        for record in sorted((r for r in history if r.id > cursor.get(name, 0)), key=lambda r: r.id):
            if still_running(record):
                break
            if record.status == AssetCheckExecutionRecordStatus.FAILED:
                if sent + unrecorded and time.monotonic() - started + policy.worst_case_s() > TICK_BUDGET_S:
                    deferred = True
                    break
                context.log.error(f"ALERT: check {name} FAILED in run {record.run_id}")
                results = deliver(_alert(name, record), jsonl_path=alerts_file(), webhook_url=webhook_url, policy=policy)
                for result in results:
                    if not result.delivered:
                        context.log.warning(f"alert for {name} not delivered to {result.sink} after {result.attempts} tries: {result.error}")
                if not recorded_somewhere(results):
                    unrecorded += 1
                    break
                sent += 1
            cursor[name] = record.id
        if deferred:
            break
    context.update_cursor(json.dumps(cursor, sort_keys=True))
    notes = [f"{sent} alert(s) sent"] if sent else [] if unrecorded or deferred else ["no new failed checks"]
    if unrecorded:
        notes.append(f"{unrecorded} alert(s) recorded nowhere, retried next tick")
    if deferred:
        notes.append("more alerts left for the next tick (time budget)")
    return dg.SkipReason("; ".join(notes))
