"""Alert delivery against real receivers on 127.0.0.1: retries, bounded attempts, timeouts, an
unwritable file, and the environment settings."""

from __future__ import annotations

import json
import time

import pytest

from persona_assets.runs.alerts import WebhookPolicy, append_jsonl, deliver, post_webhook, recorded_somewhere
from tests.alert_receivers import ScriptedReceiver, hanging_url, refusing_url

FAST = WebhookPolicy(attempts=4, timeout_s=2.0, backoff_s=0.01)


def test_server_errors_are_retried_until_delivered_and_the_attempts_recorded(tmp_path):
    path = tmp_path / "alerts.jsonl"
    with ScriptedReceiver([500, 500, 200]) as receiver:
        results = deliver({"check": "a:b"}, jsonl_path=path, webhook_url=receiver.url, policy=FAST)
    webhook, jsonl = results
    assert webhook.delivered and webhook.attempts == 3 and webhook.error is None
    assert [r["check"] for r in receiver.received] == ["a:b"] * 3
    line = json.loads(path.read_text())
    assert line["check"] == "a:b"
    assert line["delivery"] == {"webhook": {"delivered": True, "attempts": 3, "error": None}}
    assert jsonl.delivered and recorded_somewhere(results)


def test_server_that_keeps_failing_gets_exactly_the_bounded_attempts(tmp_path):
    with ScriptedReceiver([503]) as receiver:
        result = post_webhook(receiver.url, {"check": "x"}, attempts=3, backoff_s=0.0, timeout_s=2.0)
    assert len(receiver.received) == 3
    assert not result.delivered and result.attempts == 3 and "503" in result.error


def test_refused_connection_is_tried_attempts_times_with_growing_backoff(tmp_path):
    waits: list[float] = []
    path = tmp_path / "alerts.jsonl"
    with refusing_url() as url:
        results = deliver({"check": "x"}, jsonl_path=path, webhook_url=url, policy=FAST, sleep=waits.append)
    webhook = results[0]
    assert not webhook.delivered and webhook.attempts == 4 and "refused" in webhook.error.lower()
    # A wait after every failed try but the last: attempts - 1 waits of backoff × k.
    assert waits == pytest.approx([0.01, 0.02, 0.03])
    delivery = json.loads(path.read_text())["delivery"]["webhook"]
    assert delivery["delivered"] is False and delivery["attempts"] == 4 and "refused" in delivery["error"].lower()
    assert recorded_somewhere(results)  # the file has it, marked undelivered


def test_hanging_receiver_is_bounded_by_the_timeout():
    policy = WebhookPolicy(attempts=2, timeout_s=0.3, backoff_s=0.0)
    with hanging_url() as (url, accepted):
        started = time.monotonic()
        result = post_webhook(url, {"check": "x"}, attempts=policy.attempts, timeout_s=policy.timeout_s, backoff_s=0.0)
        elapsed = time.monotonic() - started
    assert not result.delivered and result.attempts == 2 and "timed out" in result.error.lower()
    assert len(accepted) == 2
    assert 0.5 <= elapsed < policy.worst_case_s() + 1.0


def test_unwritable_file_is_reported_not_raised(tmp_path):
    (tmp_path / "blocker").write_text("a file where a directory should be")
    result = append_jsonl(tmp_path / "blocker" / "alerts.jsonl", {"check": "x"})
    assert not result.delivered and result.error
    assert not recorded_somewhere(deliver({"check": "x"}, jsonl_path=tmp_path / "blocker" / "a.jsonl", webhook_url=""))


def test_unwritable_file_with_a_working_webhook_still_counts_as_recorded(tmp_path):
    (tmp_path / "blocker").write_text("")
    with ScriptedReceiver([200]) as receiver:
        results = deliver(
            {"check": "x"}, jsonl_path=tmp_path / "blocker" / "a.jsonl", webhook_url=receiver.url, policy=FAST
        )
    assert [r.delivered for r in results] == [True, False]
    assert recorded_somewhere(results)


def test_policy_worst_case():
    assert WebhookPolicy(attempts=5, timeout_s=0.5, backoff_s=0.0).worst_case_s() == pytest.approx(2.5)
    assert WebhookPolicy(attempts=3, timeout_s=1.0, backoff_s=0.5).worst_case_s() == pytest.approx(3 + 0.5 + 1.0)


def test_changed_outcomes_alerts_on_change_only():
    from persona_assets.runs.alerts import changed_outcomes

    def evaluation(run, passed, signature, check="a:kill"):
        return {"check": check, "passed": passed, "signature": signature, "run_id": run, "severity": "WARN"}

    known: dict = {}
    history = [
        (evaluation("r1", False, "s1"), ("FAILED", "first failure")),
        (evaluation("r2", False, "s1"), None),  # same evidence: a repeat
        (evaluation("r3", False, "s2"), ("FAILED", "failing with other evidence")),
        (evaluation("r4", True, "p"), ("PASSED", "passes again (failed in run r3)")),
        (evaluation("r5", True, "p"), None),
        (evaluation("r6", False, "s2"), ("FAILED", "first failure")),  # failing again after passing
        (evaluation("r7", True, "p", check="b:other"), None),  # a check that never failed stays quiet
    ]
    repeats_total = 0
    for item, expected in history:
        alerts, repeats = changed_outcomes([item], known)
        repeats_total += repeats
        assert [(a["status"], a["reason"]) for a in alerts] == ([expected] if expected else []), item
        assert all("signature" not in a and "passed" not in a and a["run_id"] == item["run_id"] for a in alerts)
    assert repeats_total == 1
    assert known["a:kill"] == {"passed": False, "signature": "s2", "run_id": "r6"}
