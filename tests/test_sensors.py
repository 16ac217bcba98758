"""The alert sensor fires once per failed check, into the Dagster log, a JSON-lines file and a webhook."""

from __future__ import annotations

import http.server
import json
import threading

import dagster as dg
import pytest

from persona_assets.sensors import failed_check_alerts
from tests.test_graph import materialize, run_config


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    _Receiver.received = []
    server = http.server.HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/alerts", _Receiver.received
    server.shutdown()


def _tick(instance, cursor):
    context = dg.build_sensor_context(instance=instance, cursor=cursor)
    result = failed_check_alerts(context)
    return context.cursor, result


def test_sensor_alerts_once_per_failed_kill_check(tiny_model_dir, tmp_path, monkeypatch, webhook):
    url, received = webhook
    monkeypatch.setenv("PERSONA_ALERT_WEBHOOK_URL", url)
    with dg.instance_for_test() as instance:
        cursor, result = _tick(instance, None)
        assert "no new failed checks" in result.skip_message

        passing_redundancy = {"min_js_std": 10.0, "max_abs_js_cosine_rho": 2.0}
        config = run_config(tmp_path, kill_gate_verdicts={"config": passing_redundancy})
        assert materialize(tiny_model_dir, config, instance=instance).success

        cursor, result = _tick(instance, cursor)
        assert "1 alert(s) sent" in result.skip_message
        lines = [json.loads(line) for line in (tmp_path / "data" / "alerts.jsonl").read_text().splitlines()]
        assert [line["check"] for line in lines] == ["kill_gate_verdicts:kill_discrimination"]
        assert lines[0]["delivery"] == {"webhook": True}
        assert [r["check"] for r in received] == ["kill_gate_verdicts:kill_discrimination"]

        # The same failure is not alerted twice.
        cursor, result = _tick(instance, cursor)
        assert "no new failed checks" in result.skip_message
        assert len((tmp_path / "data" / "alerts.jsonl").read_text().splitlines()) == 1


def test_unreachable_webhook_is_recorded_not_raised(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PERSONA_ALERT_WEBHOOK_URL", "http://127.0.0.1:9/unreachable")
    with dg.instance_for_test() as instance:
        passing_discrimination = {"min_js_std": 0.0, "min_js_ratio": 0.0, "max_abs_js_cosine_rho": -1.0}
        config = run_config(tmp_path, kill_gate_verdicts={"config": passing_discrimination})
        assert materialize(tiny_model_dir, config, instance=instance).success
        _, result = _tick(instance, None)
        assert "1 alert(s) sent" in result.skip_message
        line = json.loads((tmp_path / "data" / "alerts.jsonl").read_text().splitlines()[0])
        assert line["check"] == "kill_gate_verdicts:kill_redundancy"
        assert line["delivery"] == {"webhook": False}
