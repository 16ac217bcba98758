"""The alert sensor fires once per failed check, into the Dagster log, a JSON-lines file and a webhook.

Failures are provoked for real on the tiny model: a kill criterion with a threshold it cannot meet
(non-blocking), and a copy of the model whose final norm weight is NaN, so every logit is NaN and a
blocking invariant (which one depends on where NaN is first caught) fails its run.
"""

from __future__ import annotations

import json
import threading
import time

import dagster as dg
import pytest
import yaml

from persona_assets.assets.legacy import legacy_assets
from persona_assets.checks import all_checks, invariant_checks, legacy_checks
from persona_assets.definitions import all_assets
from persona_assets.environment import storage_resources
from persona_assets import environment, sensors
from persona_assets.sensors import failed_check_alerts
from resources.llm import CpuLLM
from tests.alert_receivers import ScriptedReceiver, refusing_url
from tests.conftest import REPO, REFERENCE_STUDY
from tests.test_graph import materialize, run_config

KILL_DISCRIMINATION = "kill_gate_verdicts:kill_discrimination"
BLOCKING_CHECKS = {f"{key.asset_key.to_user_string()}:{key.name}" for c in invariant_checks for key in c.check_keys}
# A max/min pair-JS ratio no result reaches kills discrimination; ρ bound 1 never kills redundancy.
PASSING_REDUNDANCY = {"min_js_ratio": 1e6, "max_abs_js_cosine_rho": 1.0}


@pytest.fixture
def webhook():
    with ScriptedReceiver([200]) as receiver:
        yield receiver.url, receiver.received


def _tick(instance, cursor):
    # The sinks as the definitions build them, from the environment the test has set.
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"alerts": environment.alert_sinks()}
    ) as context:
        result = failed_check_alerts(context)
        return context.cursor, result


def _alert_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _failed_checks(result) -> list[str]:
    return sorted(
        f"{e.asset_key.to_user_string()}:{e.check_name}" for e in result.get_asset_check_evaluations() if not e.passed
    )


def test_sensor_alerts_once_per_failed_kill_check(tiny_model_dir, tmp_path, monkeypatch, webhook):
    url, received = webhook
    monkeypatch.setenv("PERSONA_ALERT_WEBHOOK_URL", url)
    with dg.instance_for_test() as instance:
        cursor, result = _tick(instance, None)
        assert "no new failed checks" in result.skip_message

        config = run_config(tmp_path, kill_gate_verdicts={"config": PASSING_REDUNDANCY})
        assert materialize(tiny_model_dir, config, instance=instance).success

        cursor, result = _tick(instance, cursor)
        assert "1 alert(s) sent" in result.skip_message
        lines = _alert_lines(tmp_path / "data" / "alerts.jsonl")
        assert [line["check"] for line in lines] == [KILL_DISCRIMINATION]
        assert lines[0]["delivery"] == {"webhook": {"delivered": True, "attempts": 1, "error": None}}
        assert [r["check"] for r in received] == [KILL_DISCRIMINATION]

        assert result.skip_message.startswith(f"ALERTS SENT: 1 alert(s) sent ({KILL_DISCRIMINATION} FAILED)")
        assert lines[0]["status"] == "FAILED" and lines[0]["reason"] == "first failure"

        # The same failure is not alerted twice: not on the next tick, nor when an identical run repeats it.
        cursor, result = _tick(instance, cursor)
        assert "no new failed checks" in result.skip_message
        assert materialize(tiny_model_dir, config, instance=instance).success
        cursor, result = _tick(instance, cursor)
        assert (
            result.skip_message
            == "no new failed checks; 1 known failure(s) seen again with the same evidence, not re-alerted"
        )
        # A run that fails on a bad setting evaluates nothing, so it alerts nothing.
        bad = run_config(tmp_path, divergence_matrices={"config": {"responses_per_batch": 0}})
        assert not materialize(tiny_model_dir, bad, instance=instance).success
        cursor, result = _tick(instance, cursor)
        assert result.skip_message == "no new failed checks"
        assert len(_alert_lines(tmp_path / "data" / "alerts.jsonl")) == len(received) == 1

        # The check passes again (thresholds any result meets): one alert saying so.
        passing = run_config(
            tmp_path,
            kill_gate_verdicts={"config": {"min_js_std": 0.0, "min_js_ratio": 1.0, "max_abs_js_cosine_rho": 1.0}},
        )
        assert materialize(tiny_model_dir, passing, instance=instance).success
        cursor, result = _tick(instance, cursor)
        assert result.skip_message.startswith(f"ALERTS SENT: 1 alert(s) sent ({KILL_DISCRIMINATION} PASSED)")
        again = _alert_lines(tmp_path / "data" / "alerts.jsonl")[-1]
        assert (
            again["status"] == "PASSED"
            and again["check"] == KILL_DISCRIMINATION
            and lines[0]["run_id"] in again["reason"]
        )


def test_unreachable_webhook_is_recorded_not_raised(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PERSONA_ALERT_WEBHOOK_ATTEMPTS", "2")
    monkeypatch.setenv("PERSONA_ALERT_WEBHOOK_BACKOFF_S", "0.01")
    with dg.instance_for_test() as instance, refusing_url() as url:
        monkeypatch.setenv("PERSONA_ALERT_WEBHOOK_URL", url)
        # Discrimination cannot fail with these bounds; redundancy fails on any non-zero ρ.
        passing_discrimination = {"min_js_std": 0.0, "min_js_ratio": 1.0, "max_abs_js_cosine_rho": 0.0}
        config = run_config(tmp_path, kill_gate_verdicts={"config": passing_discrimination})
        assert materialize(tiny_model_dir, config, instance=instance).success
        cursor, result = _tick(instance, None)
        assert "1 alert(s) sent" in result.skip_message
        [line] = _alert_lines(tmp_path / "data" / "alerts.jsonl")
        assert line["check"] == "kill_gate_verdicts:kill_redundancy"
        assert line["delivery"]["webhook"]["delivered"] is False
        assert (
            line["delivery"]["webhook"]["attempts"] == 2 and "refused" in line["delivery"]["webhook"]["error"].lower()
        )
        # Recorded as undelivered in the file: not retried on the next tick.
        _, result = _tick(instance, cursor)
        assert "no new failed checks" in result.skip_message
        assert len(_alert_lines(tmp_path / "data" / "alerts.jsonl")) == 1


def test_blocking_failure_alerts_once_per_failed_run(nan_model_dir, tmp_path, monkeypatch, webhook):
    url, received = webhook
    monkeypatch.setenv("PERSONA_ALERT_WEBHOOK_URL", url)
    alerts = tmp_path / "data" / "alerts.jsonl"
    with dg.instance_for_test() as instance:
        first = materialize(nan_model_dir, run_config(tmp_path), instance=instance)
        failed = _failed_checks(first)
        assert not first.success and failed and set(failed) <= BLOCKING_CHECKS

        cursor, result = _tick(instance, None)
        assert f"{len(failed)} alert(s) sent" in result.skip_message
        lines = _alert_lines(alerts)
        assert sorted(line["check"] for line in lines) == failed
        assert {(line["run_id"], line["severity"]) for line in lines} == {(first.run_id, "ERROR")}
        assert sorted((r["check"], r["run_id"]) for r in received) == [(name, first.run_id) for name in failed]
        # The kill checks were planned but never ran (their inputs failed): nothing waits for them.
        assert json.loads(cursor)["RUN_FAILURE"] > 0 and json.loads(cursor)["pending"] == []

        for _ in range(2):
            cursor, result = _tick(instance, cursor)
            assert "no new failed checks" in result.skip_message
        assert len(_alert_lines(alerts)) == len(received) == len(failed)

        # The same run again fails the same checks with the same evidence: known, not re-alerted.
        second = materialize(nan_model_dir, run_config(tmp_path), instance=instance)
        assert not second.success and _failed_checks(second) == failed
        cursor, result = _tick(instance, cursor)
        assert (
            result.skip_message
            == f"no new failed checks; {len(failed)} known failure(s) seen again with the same evidence, not re-alerted"
        )
        assert (
            [line["run_id"] for line in _alert_lines(alerts)]
            == [first.run_id] * len(failed)
            == [r["run_id"] for r in received]
        )


def test_blocking_and_non_blocking_failures_of_one_run_alert_once_each(nan_model_dir, tmp_path, monkeypatch, webhook):
    """The legacy branch does not depend on the model, so its kill checks still run (and fail)
    in the run whose divergences are NaN."""
    url, received = webhook
    monkeypatch.setenv("PERSONA_ALERT_WEBHOOK_URL", url)
    legacy = yaml.safe_load((REPO / "configs" / "reanalyze_legacy.yaml").read_text())["ops"]
    legacy["legacy_results"]["config"]["legacy_dir"] = str(REFERENCE_STUDY)
    for op in ("legacy_cosine_precheck", "legacy_leakage_correlations"):
        legacy[op]["config"]["n_bootstrap"] = 50
        legacy[op]["config"]["n_permutations"] = 50
    legacy["legacy_kill_gate_verdicts"]["config"].update(PASSING_REDUNDANCY)
    config = dg.RunConfig(ops={**run_config(tmp_path).ops, **legacy})
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [*all_assets, *legacy_assets, *all_checks, *legacy_checks],
            resources={"llm": CpuLLM(model=str(nan_model_dir)), **storage_resources()},
            run_config=config,
            raise_on_error=False,
            instance=instance,
        )
        assert not result.success
        failed = _failed_checks(result)
        assert set(failed) & BLOCKING_CHECKS and "legacy_kill_gate_verdicts:kill_discrimination" in failed

        cursor, tick = _tick(instance, None)
        assert f"{len(failed)} alert(s) sent" in tick.skip_message
        _, tick = _tick(instance, cursor)
        assert "no new failed checks" in tick.skip_message
        assert sorted(line["check"] for line in _alert_lines(tmp_path / "data" / "alerts.jsonl")) == failed
        assert sorted(r["check"] for r in received) == failed
        assert {r["run_id"] for r in received} == {result.run_id}

        # With no time left in a tick's budget, each tick sends one alert and leaves the rest
        # (replayed here from an empty cursor into a second file): still exactly one per failure.
        monkeypatch.setattr(sensors, "TICK_BUDGET_S", 0.0)
        monkeypatch.setenv("PERSONA_ALERTS_FILE", str(tmp_path / "replayed.jsonl"))
        cursor, messages = None, []
        for _ in range(len(failed) + 1):
            cursor, tick = _tick(instance, cursor)
            messages.append(tick.skip_message)
        assert all(m.startswith("ALERTS SENT: 1 alert(s) sent") for m in messages[:-1]) and "time budget" in messages[0]
        assert messages[-1] == "no new failed checks"
        assert sorted(line["check"] for line in _alert_lines(tmp_path / "replayed.jsonl")) == failed


def test_alert_recorded_nowhere_is_kept_for_the_next_tick(nan_model_dir, tmp_path, monkeypatch):
    """Decided behaviour: an alert counts as recorded once the JSON-lines file or the webhook took
    it. When neither did, the tick still returns normally (the failure is logged) and the cursor
    stays before the alert, so the next tick tries again."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the alerts directory should be")
    alerts = blocker / "alerts.jsonl"
    monkeypatch.setenv("PERSONA_ALERTS_FILE", str(alerts))
    monkeypatch.setenv("PERSONA_ALERT_WEBHOOK_ATTEMPTS", "2")
    monkeypatch.setenv("PERSONA_ALERT_WEBHOOK_BACKOFF_S", "0")
    with dg.instance_for_test() as instance:
        run = materialize(nan_model_dir, run_config(tmp_path), instance=instance)
        failed = _failed_checks(run)
        assert failed

        cursor, result = _tick(instance, None)
        assert result.skip_message == f"{len(failed)} alert(s) recorded nowhere, retried next tick"

        with ScriptedReceiver([500]) as receiver:  # the webhook answers, but never takes it
            monkeypatch.setenv("PERSONA_ALERT_WEBHOOK_URL", receiver.url)
            cursor, result = _tick(instance, cursor)
            monkeypatch.delenv("PERSONA_ALERT_WEBHOOK_URL")
        assert "recorded nowhere" in result.skip_message
        assert sorted(r["check"] for r in receiver.received) == sorted(failed * 2)

        blocker.unlink()
        cursor, result = _tick(instance, cursor)
        assert result.skip_message.startswith(f"ALERTS SENT: {len(failed)} alert(s) sent (")
        _, result = _tick(instance, cursor)
        assert result.skip_message == "no new failed checks"
        lines = _alert_lines(alerts)
        assert sorted(line["check"] for line in lines) == failed and {line["run_id"] for line in lines} == {run.run_id}


def test_check_of_a_run_in_progress_is_alerted_once_it_has_failed(nan_model_dir, tmp_path):
    """A check's history row exists from the start of its run (PLANNED) and is updated in place
    when the check is evaluated: a tick during the run must not move the cursor past it."""
    alerts = tmp_path / "data" / "alerts.jsonl"
    with dg.instance_for_test() as instance:
        finished = {}
        worker = threading.Thread(
            target=lambda: finished.setdefault(
                "result", materialize(nan_model_dir, run_config(tmp_path), instance=instance)
            )
        )
        worker.start()
        # Once the run has started, every check it will evaluate has its PLANNED row.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
            r.status == dg.DagsterRunStatus.STARTED for r in instance.get_runs()
        ):
            time.sleep(0.01)
        cursor, result = _tick(instance, None)
        assert not instance.get_runs()[0].is_finished, "the run ended before the tick: nothing in progress was seen"
        assert result.skip_message == "no new failed checks"
        worker.join()

        failed = _failed_checks(finished["result"])
        assert failed
        cursor, result = _tick(instance, cursor)
        assert result.skip_message.startswith(f"ALERTS SENT: {len(failed)} alert(s) sent (")
        _, result = _tick(instance, cursor)
        assert result.skip_message == "no new failed checks"
        assert sorted(line["check"] for line in _alert_lines(alerts)) == failed
