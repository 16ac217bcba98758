"""Alerts when an asset check fails, built on Dagster's public instance API.

Open-source Dagster has no asset-check sensor, and non-blocking failures leave the run green, so
one sensor watches runs as they end (success, failure or cancellation: `fetch_run_status_changes`)
and reads each ended run's asset-check evaluations (`get_records_for_run`); every failed
evaluation, blocking or not, is alerted once. Sinks come from the `alerts` resource (AlertSinks):
the Dagster log (always), an append-only JSON-lines file and a webhook when one is set.

The cursor holds, per run-ending event type, the storage id of the last event dealt with, and the
alerts not yet recorded (`pending`):
- An alert counts as recorded when the JSON-lines file or the webhook took it (a webhook that is
  down is written to the file as undelivered). If neither took it, it stays pending and the next
  tick tries again; the Dagster log alone does not count.
- A tick stops starting new deliveries once a further worst-case webhook delivery could overrun
  TICK_BUDGET_S (Dagster abandons a sensor evaluation after DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS,
  60 s by default, and an abandoned tick keeps its old cursor, which would repeat the alerts it had
  sent). The rest stay pending for the next one.
- A check of a run still going is alerted when its run ends (a blocking failure ends it soon).
"""

from __future__ import annotations

import json
import time
from typing import Any

import dagster as dg

from persona_assets.core.alerts import deliver, recorded_somewhere
from resources.alert_sinks import AlertSinks

TICK_BUDGET_S = 40.0
RUN_END_EVENTS = (dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_CANCELED)
RUNS_PER_TICK = 100


def failed_check_alerts_of_run(instance: dg.DagsterInstance, run_id: str) -> list[dict[str, Any]]:
    """One alert per failed asset-check evaluation of the run, in the order they were evaluated."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    alerts = []
    for record in records:
        evaluation = record.event_log_entry.dagster_event.asset_check_evaluation_data
        if evaluation.passed:
            continue
        alerts.append(
            {
                "check": f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}",
                "status": "FAILED",
                "run_id": run_id,
                "storage_id": record.storage_id,
                "severity": evaluation.severity.value,
                "description": evaluation.description,
                "timestamp": record.timestamp,
            }
        )
    return alerts


def _newly_ended_runs(instance: dg.DagsterInstance, cursor: dict[str, Any]) -> list[tuple[int, str, str]]:
    """(storage id, event type, run id) of runs that ended after the cursor, oldest first."""
    ended = []
    for event_type in RUN_END_EVENTS:
        records = instance.fetch_run_status_changes(
            dg.RunStatusChangeRecordsFilter(event_type=event_type, after_storage_id=cursor.get(event_type.name, 0)),
            limit=RUNS_PER_TICK,
            ascending=True,
        ).records
        ended += [(r.storage_id, event_type.name, r.run_id) for r in records]
    return sorted(ended)


@dg.sensor(minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING)
def failed_check_alerts(context: dg.SensorEvaluationContext, alerts: AlertSinks) -> dg.SkipReason:
    """Alert once per failed asset-check evaluation (Dagster log, JSON-lines file, optional webhook)."""
    cursor = json.loads(context.cursor) if context.cursor else {}
    pending: list[dict[str, Any]] = cursor.pop("pending", [])
    for storage_id, event_type, run_id in _newly_ended_runs(context.instance, cursor):
        pending += failed_check_alerts_of_run(context.instance, run_id)
        cursor[event_type] = storage_id

    policy = alerts.policy
    started = time.monotonic()
    sent, unrecorded, deferred = 0, [], []
    for alert in pending:
        if (sent or unrecorded) and time.monotonic() - started + policy.worst_case_s() > TICK_BUDGET_S:
            deferred.append(alert)
            continue
        context.log.error(f"ALERT: check {alert['check']} FAILED in run {alert['run_id']}")
        results = deliver(alert, jsonl_path=alerts.jsonl_path, webhook_url=alerts.webhook_url, policy=policy)
        for result in results:
            if not result.delivered:
                context.log.warning(f"alert for {alert['check']} not delivered to {result.sink} after {result.attempts} tries: {result.error}")
        if recorded_somewhere(results):
            sent += 1
        else:
            unrecorded.append(alert)
    context.update_cursor(json.dumps({**cursor, "pending": unrecorded + deferred}, sort_keys=True))
    notes = [f"{sent} alert(s) sent"] if sent else [] if unrecorded or deferred else ["no new failed checks"]
    if unrecorded:
        notes.append(f"{len(unrecorded)} alert(s) recorded nowhere, retried next tick")
    if deferred:
        notes.append("more alerts left for the next tick (time budget)")
    return dg.SkipReason("; ".join(notes))
