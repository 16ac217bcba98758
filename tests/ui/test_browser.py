"""The Dagster UI as a researcher sees it: `dagster dev` on 127.0.0.1, driven by headless Chromium.

Starts `dagster dev` in its own process group (stopped by its PID), launches a materialization of
the whole graph through the webserver's GraphQL API (as the Launchpad does), then checks in the
browser that the asset graph lists every asset, that the check results are visible, and that the
figures asset shows its embedded PNG preview. Screenshots go to test-artifacts/ui/.

Needs Debian's chromium (/usr/bin/chromium) and the playwright package (its own browser download
is not used). In CI a missing chromium fails the test instead of skipping it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_definitions import EXPECTED_ASSETS

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts" / "ui"
CHECKS = ["divergences_finite", "js_symmetric", "js_bounded_zero_diagonal", "kl_nonnegative_zero_diagonal"]

LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { invalidOutputName }
  }
}
"""
RUN_STATUS = "query Status($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
CHECK_STATUSES = """
query Checks($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode { assetChecksOrError { ... on AssetChecks { checks {
      name executionForLatestMaterialization { runId status evaluation { success } }
    } } } }
  }
}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _graphql(base: str, query: str, variables: dict) -> dict:
    request = urllib.request.Request(
        f"{base}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture
def dagster_dev(tmp_path, tiny_model_dir):
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run must install Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    home = tmp_path / "dagster_home"
    home.mkdir()
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "PERSONA_MODEL": str(tiny_model_dir), "PERSONA_RESOURCES": "cpu"}
    log = open(tmp_path / "dagster_dev.log", "w")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster"),
            "dev",
            "-m",
            "persona_assets.definitions",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{base}/server_info", timeout=5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "dagster dev did not come up:\n" + (tmp_path / "dagster_dev.log").read_text()[-3000:]
                    )
                time.sleep(1)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()


def _launch_and_wait(base: str, extra_ops: dict | None = None) -> str:
    run_config = {
        "ops": {
            "eval_set": {"config": {"personas": ["villain", "comedian", "assistant"], "n_questions": 1}},
            "generations": {"config": {"max_new_tokens": 6}},
            "persona_cosine": {"config": {"layers": [1, 2]}},
            "leakage_correlations": {"config": {"n_bootstrap": 50}},
            "cosine_precheck": {"config": {"n_bootstrap": 50}},
            **(extra_ops or {}),
        }
    }
    params = {
        "selector": {
            "repositoryLocationName": "persona_assets.definitions",
            "repositoryName": "__repository__",
            "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": [name]} for name in sorted(EXPECTED_ASSETS)],
        },
        "runConfigData": run_config,
        "mode": "default",
    }
    launched = _graphql(base, LAUNCH_RUN, {"params": params})["data"]["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = _graphql(base, RUN_STATUS, {"id": run_id})["data"]["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            assert status == "SUCCESS", f"run {run_id} ended {status}"
            return run_id
        time.sleep(2)
    raise AssertionError(f"run {run_id} did not finish in time")


def _check_statuses(base: str, asset: str) -> dict[str, tuple[str, str, bool]]:
    """What the webserver reports for each check of `asset`: (run id, status, evaluation passed)."""
    node = _graphql(base, CHECK_STATUSES, {"key": {"path": [asset]}})["data"]["assetNodeOrError"]
    out = {}
    for check in node["assetChecksOrError"]["checks"]:
        execution = check["executionForLatestMaterialization"] or {}
        out[check["name"]] = (
            execution.get("runId"),
            execution.get("status"),
            (execution.get("evaluation") or {}).get("success"),
        )
    return out


def _dismiss_welcome_dialog(page) -> None:
    """First visits show a newsletter dialog over the page; skip it like a person would."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=5_000)
        skip.click()
    except Exception:  # noqa: BLE001 - no dialog this time
        pass


def test_ui_shows_lineage_checks_and_figure_preview(dagster_dev):
    from playwright.sync_api import sync_playwright

    base = dagster_dev
    run_id = _launch_and_wait(base)
    # Every invariant of the divergences ran in this run and passed, as the UI's checks tab shows.
    statuses = _check_statuses(base, "divergence_matrices")
    assert {name: statuses.get(name) for name in CHECKS} == {name: (run_id, "SUCCEEDED", True) for name in CHECKS}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport={"width": 2800, "height": 1800})

        page.goto(f"{base}/assets", wait_until="networkidle")
        _dismiss_welcome_dialog(page)
        for name in EXPECTED_ASSETS:
            page.get_by_text(name, exact=True).first.wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "assets.png"), full_page=True)

        # The lineage of the figures asset, all the way upstream: the experiment end to end.
        page.goto(f"{base}/assets/figures?view=lineage", wait_until="networkidle")
        page.get_by_role("button", name="Upstream").click()
        page.get_by_role("button", name="All", exact=True).first.click()
        page.wait_for_timeout(3_000)
        page.screenshot(path=str(ARTIFACTS / "figures_lineage.png"))
        for name in EXPECTED_ASSETS - {"cosine_precheck"}:  # cosine_precheck is a side branch
            page.get_by_text(name, exact=True).first.wait_for(timeout=30_000)

        page.goto(f"{base}/assets/divergence_matrices?view=checks", wait_until="networkidle")
        for check in CHECKS:
            page.get_by_text(check).first.wait_for(timeout=30_000)
        # The tab shows a status (what each check's status is, the webserver said above).
        assert page.get_by_text("Passed").count() + page.get_by_text("Succeeded").count() >= 1
        page.screenshot(path=str(ARTIFACTS / "divergence_checks.png"), full_page=True)

        page.goto(f"{base}/assets/figures", wait_until="networkidle")
        page.get_by_text("Show Markdown").first.click()
        preview = page.locator("img[src^='data:image/png;base64']").first
        preview.wait_for(timeout=30_000)
        assert preview.evaluate("img => img.naturalWidth") > 50
        page.screenshot(path=str(ARTIFACTS / "figures_asset.png"), full_page=True)
        browser.close()


SENSOR_TICKS = """
query Ticks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    ... on Sensor { sensorState { ticks(limit: 25) { status timestamp skipReason } } }
  }
}
"""
STRICTEST_KILL_GATES = {"min_js_std": 0.6931, "max_abs_js_cosine_rho": 0.0}  # both gates fire on any result


def _ticks_since(base: str, since: float) -> list[dict]:
    """The alert sensor's finished ticks that started after `since` (epoch seconds)."""
    selector = {
        "repositoryLocationName": "persona_assets.definitions",
        "repositoryName": "__repository__",
        "sensorName": "failed_check_alerts",
    }
    sensor = _graphql(base, SENSOR_TICKS, {"selector": selector})["data"]["sensorOrError"]
    return [t for t in sensor["sensorState"]["ticks"] if t["timestamp"] > since and t["status"] != "STARTED"]


def _wait_for_tick(base: str, since: float, says: str, timeout_s: float = 240) -> dict:
    """The first tick since `since` whose status message contains `says` (the sensor ticks every 15 s)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [t for t in _ticks_since(base, since) if says in (t["skipReason"] or "")]
        if found:
            return min(found, key=lambda t: t["timestamp"])
        time.sleep(3)
    raise AssertionError(f"no alert-sensor tick said {says!r}: {_ticks_since(base, since)}")


def test_ui_tells_the_story(dagster_dev, tmp_path):
    """The matrix table on divergence_matrices, the kill verdict on the runs list and run page, the
    scenarios as jobs, and a second identical run that sends no new alert (the tick says so)."""
    from playwright.sync_api import sync_playwright

    base = dagster_dev
    kill = {"kill_gate_verdicts": {"config": STRICTEST_KILL_GATES}}
    launched = time.time()
    first = _launch_and_wait(base, extra_ops=kill)
    tick = _wait_for_tick(base, launched, "ALERTS SENT")
    assert tick["skipReason"].startswith("ALERTS SENT: 2 alert(s) sent"), tick
    alerts = tmp_path / "data" / "alerts.jsonl"
    assert len(alerts.read_text().splitlines()) == 2
    launched = time.time()
    second = _launch_and_wait(base, extra_ops=kill)
    _wait_for_tick(base, launched, "2 known failure(s) seen again")
    assert not [t for t in _ticks_since(base, launched) if "ALERTS SENT" in (t["skipReason"] or "")]
    assert len(alerts.read_text().splitlines()) == 2  # no new alert for the identical run
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        page = browser.new_page(viewport={"width": 2000, "height": 1400})

        page.goto(f"{base}/runs", wait_until="networkidle")
        _dismiss_welcome_dialog(page)
        page.get_by_text("KILLED: discrimination, redundancy").first.wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "runs_with_verdict.png"), full_page=True)
        # The run page: the warning in the run's log, and the tag behind "View tags and config".
        page.goto(f"{base}/runs/{second}", wait_until="networkidle")
        page.get_by_text("kill gates on this run: KILLED: discrimination, redundancy").first.wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "run_page_verdict.png"))
        page.get_by_role("button", name="View tags and config").click()
        page.get_by_role("dialog").get_by_text("persona/kill_gates").first.wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "run_page_tags.png"))

        page.goto(f"{base}/assets/divergence_matrices?view=events", wait_until="networkidle")
        page.get_by_text("js_matrix").first.wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "divergence_matrices_events.png"), full_page=True)
        # The matrix is drawn inline in the metadata (personas as rows and columns).
        for persona in ("villain", "comedian", "assistant"):
            page.get_by_text(persona, exact=True).first.wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "js_matrix_table.png"))

        page.goto(f"{base}/jobs", wait_until="networkidle")
        for job in ("ci", "demo", "full_study", "reanalyse_study"):
            page.get_by_text(job, exact=True).first.wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "scenario_jobs.png"))
        browser.close()
    assert first != second
