"""Alerts when an asset check's outcome changes, built on Dagster's public instance API.

Open-source Dagster has no asset-check sensor, and non-blocking failures leave the run green, so
one sensor watches runs as they end (success, failure or cancellation: `fetch_run_status_changes`)
and reads each ended run's asset-check evaluations (`get_records_for_run`). An alert goes out when
a check's outcome changes (`persona_assets.runs.alerts.changed_outcomes`): it fails for the first
time, fails with other evidence (other inputs), or passes after failing. A failure repeated with
the same evidence — a re-run of unchanged inputs, the bundled study's historical kill checks on
every "Materialize all" — is not alerted again. Sinks come from the `alerts` resource
(AlertSinks): the Dagster log (always), an append-only JSON-lines file and a webhook when one is set.

The cursor holds, per run-ending event type, the storage id of the last event dealt with, each
check's last known outcome (`outcomes`), and the alerts not yet recorded (`pending`):
- An alert counts as recorded when the JSON-lines file or the webhook took it (a webhook that is
  down is written to the file as undelivered). If neither took it, it stays pending and the next
  tick tries again; the Dagster log alone does not count.
- A tick stops starting new deliveries once a further worst-case webhook delivery could overrun
  TICK_BUDGET_S (Dagster abandons a sensor evaluation after DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS,
  60 s by default, and an abandoned tick keeps its old cursor, which would repeat the alerts it had
  sent). The rest stay pending for the next one.
- A check of a run still going is alerted when its run ends (a blocking failure ends it soon).
A tick that sent alerts says so first in its status message ("ALERTS SENT: …"), naming the checks.
"""

from __future__ import annotations

import json
import time
from typing import Any

import dagster as dg

from persona_assets.runs.alerts import FAILED, changed_outcomes, deliver, outcome_signature, recorded_somewhere
from resources.alert_sinks import AlertSinks

TICK_BUDGET_S = 40.0
RUN_END_EVENTS = (dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_CANCELED)
RUNS_PER_TICK = 100


def check_evaluations_of_run(instance: dg.DagsterInstance, run_id: str) -> list[dict[str, Any]]:
    """Every asset-check evaluation of the run, in the order they were evaluated, with its outcome's signature."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    evaluations = []
    for record in records:
        evaluation = record.event_log_entry.dagster_event.asset_check_evaluation_data
        metadata = {key: value.value for key, value in evaluation.metadata.items()}
        evaluations.append(
            {
                "check": f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}",
                "passed": evaluation.passed,
                "signature": outcome_signature(
                    passed=evaluation.passed,
                    severity=evaluation.severity.value,
                    description=evaluation.description,
                    metadata=metadata,
                ),
                "run_id": run_id,
                "storage_id": record.storage_id,
                "severity": evaluation.severity.value,
                "description": evaluation.description,
                "timestamp": record.timestamp,
            }
        )
    return evaluations


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
    """Alert when a check's outcome changes (Dagster log, JSON-lines file, optional webhook); repeats stay quiet."""
    cursor = json.loads(context.cursor) if context.cursor else {}
    pending: list[dict[str, Any]] = cursor.pop("pending", [])
    known: dict[str, dict[str, Any]] = cursor.pop("outcomes", {})
    repeats = 0
    for storage_id, event_type, run_id in _newly_ended_runs(context.instance, cursor):
        new_alerts, repeated = changed_outcomes(check_evaluations_of_run(context.instance, run_id), known)
        pending += new_alerts
        repeats += repeated
        cursor[event_type] = storage_id

    policy = alerts.policy
    started = time.monotonic()
    sent, unrecorded, deferred = [], [], []
    for alert in pending:
        if (sent or unrecorded) and time.monotonic() - started + policy.worst_case_s() > TICK_BUDGET_S:
            deferred.append(alert)
            continue
        status = alert.get("status", FAILED)  # alerts left pending by an earlier version carry no status
        line = f"ALERT: check {alert['check']} {status} in run {alert['run_id']}"
        line += f" ({alert['reason']})" if "reason" in alert else ""
        (context.log.error if status == FAILED else context.log.info)(line)
        results = deliver(alert, jsonl_path=alerts.jsonl_path, webhook_url=alerts.webhook_url, policy=policy)
        for result in results:
            if not result.delivered:
                context.log.warning(
                    f"alert for {alert['check']} not delivered to {result.sink} after {result.attempts} tries: "
                    f"{result.error}"
                )
        if recorded_somewhere(results):
            sent.append(alert)
        else:
            unrecorded.append(alert)
    context.update_cursor(json.dumps({**cursor, "outcomes": known, "pending": unrecorded + deferred}, sort_keys=True))
    return dg.SkipReason(tick_message(sent, len(unrecorded), bool(deferred), repeats))


def tick_message(sent: list[dict[str, Any]], n_unrecorded: int, deferred: bool, repeats: int) -> str:
    """The tick's status line: a tick that alerted starts with ALERTS SENT and names the checks."""
    notes = []
    if sent:
        named = ", ".join(f"{a['check']} {a.get('status', FAILED)}" for a in sent[:5])
        named += f" and {len(sent) - 5} more" if len(sent) > 5 else ""
        notes.append(f"ALERTS SENT: {len(sent)} alert(s) sent ({named})")
    elif not (n_unrecorded or deferred):
        notes.append("no new failed checks")
    if repeats:
        notes.append(f"{repeats} known failure(s) seen again with the same evidence, not re-alerted")
    if n_unrecorded:
        notes.append(f"{n_unrecorded} alert(s) recorded nowhere, retried next tick")
    if deferred:
        notes.append("more alerts left for the next tick (time budget)")
    return "; ".join(notes)
