"""The Dagster UI as a researcher sees it: `dagster dev` on 127.0.0.1, driven by headless Chromium.

One `dagster dev`, two small runs of the whole graph launched through the webserver's GraphQL API
(as "Materialize all" does), both with kill thresholds that fire; then, without further runs:
- the alert sensor alerted once for the first run and not again for the identical second run (the
  alerting tick says so in its details);
- a scenario job launched with a setting out of range, or outside a setting's choices, is refused
  before any run exists, so every asset keeps the last good run as its latest;
- in the browser: the asset catalog and the lineage of `figures` (every asset), the checks tab of
  `divergence_matrices` (its invariants passed), the JS/KL matrix tables in its metadata, the
  verdict in the runs list and on the run page (log warning, run tag), the figure previews of
  `figures`, the sensor's tick history, the scenario jobs.
Screenshots go to test-artifacts/ui/.

Needs Debian's chromium (/usr/bin/chromium) and the playwright package (its own browser download
is not used). In CI a missing chromium fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_definitions import EXPECTED_ASSETS
from tests.ui.dagster_api import (
    check_statuses,
    latest_info,
    launch,
    launch_and_wait,
    run_count,
    ticks_since,
    wait_for_tick,
)

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts" / "ui"
CHECKS = ["divergences_finite", "js_symmetric", "js_bounded_zero_diagonal", "kl_nonnegative_zero_diagonal"]
STRICTEST_KILL_GATES = {"min_js_std": 0.6931, "max_abs_js_cosine_rho": 0.0}  # both gates fire on any result
VERDICT = "KILLED: discrimination, redundancy"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def dagster_dev(tmp_path, tiny_model_dir):
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run must install Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    home = tmp_path / "dagster_home"
    home.mkdir()
    port = free_port()
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
        # The whole process group (webserver, daemon, code server) goes with it: a test's throwaway
        # instance needs no clean shutdown, so a short grace before SIGKILL (a loaded machine took 30 s).
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()


def dismiss_welcome_dialog(page) -> None:
    """First visits show a newsletter dialog over the page; skip it like a person would."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=5_000)
        skip.click()
    except Exception:  # noqa: BLE001 - no dialog this time
        pass


def assert_refused_launches(base: str) -> None:
    """Settings out of range or outside a setting's choices: refused at launch, no run created."""
    runs_before = run_count(base)
    out_of_range = launch(base, "ci", {"ops": {"leakage_correlations": {"config": {"n_bootstrap": -1}}}})
    assert out_of_range["__typename"] == "PythonError", out_of_range
    assert "run refused, nothing was started" in out_of_range["message"], out_of_range
    assert "ops.leakage_correlations.config.n_bootstrap" in out_of_range["message"]
    unknown_choice = launch(base, "ci", {"ops": {"divergence_matrices": {"config": {"averaging": "median"}}}})
    assert unknown_choice["__typename"] == "RunConfigValidationInvalid", unknown_choice
    assert "median" in str(unknown_choice["errors"])
    assert run_count(base) == runs_before


def catalog_lineage_and_checks(page, base: str) -> None:
    page.goto(f"{base}/assets", wait_until="networkidle")
    dismiss_welcome_dialog(page)
    for name in EXPECTED_ASSETS:
        page.get_by_text(name, exact=True).first.wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "assets.png"), full_page=True)
    # The lineage, the experiment end to end, in two views that each fit the window (the asset graph draws
    # only the nodes in view, and the whole upstream of `figures` no longer fits): what `figures` draws
    # from, then everything upstream of `analysis_inputs`.
    direct = {"analysis_inputs", "layer_divergences", "divergence_profiles", "persona_baseline", "kill_gate_verdicts"}
    page.goto(f"{base}/assets/figures?view=lineage&lineageScope=upstream&lineageDepth=1", wait_until="networkidle")
    for name in direct | {"figures", "leakage_correlations"}:
        page.get_by_text(name, exact=True).first.wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "figures_lineage.png"))
    page.goto(f"{base}/assets/analysis_inputs?view=lineage", wait_until="networkidle")
    page.get_by_role("button", name="Upstream").click()
    page.get_by_role("button", name="All", exact=True).first.click()
    upstream = {"eval_set", "generations", "persona_cosine", "leakage_rates", "divergence_matrices"}
    for name in upstream | {"divergence_per_response", "divergence_per_pair_question"}:
        page.get_by_text(name, exact=True).first.wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "analysis_inputs_lineage.png"))
    # Every asset but the side branch cosine_precheck is in one of the two views.
    assert EXPECTED_ASSETS - {"cosine_precheck"} <= direct | upstream | {
        "figures",
        "leakage_correlations",
        "divergence_per_response",
        "divergence_per_pair_question",
    }
    page.goto(f"{base}/assets/divergence_matrices?view=checks", wait_until="networkidle")
    for check in CHECKS:
        page.get_by_text(check).first.wait_for(timeout=30_000)
    # The tab shows a status (what each check's status is, the webserver said).
    assert page.get_by_text("Passed").count() + page.get_by_text("Succeeded").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "divergence_checks.png"), full_page=True)


def runs_and_run_page(page, base: str, run_id: str) -> None:
    page.goto(f"{base}/runs", wait_until="networkidle")
    page.get_by_text(f"persona/kill_gates: {VERDICT}").first.wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "runs_with_verdict.png"), full_page=True)
    # The run page: the warning in the run's log, and the tag behind "View tags and config".
    page.goto(f"{base}/runs/{run_id}", wait_until="networkidle")
    page.get_by_text(f"kill gates on this run: {VERDICT}").first.wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "run_page_verdict.png"))
    page.get_by_role("button", name="View tags and config").click()
    page.get_by_role("dialog").get_by_text("persona/kill_gates").first.wait_for(timeout=30_000)
    page.wait_for_timeout(500)  # the dialog fades in
    page.screenshot(path=str(ARTIFACTS / "run_page_tags.png"))


def divergence_matrices_pages(page, base: str, run_id: str) -> None:
    # After the refused launches: materialized by the last good run, no failure shown.
    page.goto(f"{base}/assets/divergence_matrices", wait_until="networkidle")
    page.get_by_text(run_id[:8]).first.wait_for(timeout=30_000)
    assert page.get_by_text("Failed", exact=True).count() == 0
    page.screenshot(path=str(ARTIFACTS / "divergence_matrices_asset.png"), full_page=True)
    # The matrices drawn inline in the metadata (personas as rows and columns).
    page.goto(f"{base}/assets/divergence_matrices?view=events", wait_until="networkidle")
    page.get_by_text("js_matrix").first.wait_for(timeout=30_000)
    for persona in ("villain", "comedian", "assistant"):
        page.get_by_text(persona, exact=True).first.wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "divergence_matrices_events.png"), full_page=True)


def figures_page(page, base: str) -> None:
    page.goto(f"{base}/assets/figures", wait_until="networkidle")
    page.get_by_text(VERDICT).first.wait_for(timeout=30_000)
    page.get_by_text("Show Markdown").first.click()
    preview = page.locator("img[src^='data:image/png;base64']").first
    preview.wait_for(timeout=30_000)
    assert preview.evaluate("img => img.naturalWidth") > 50
    page.screenshot(path=str(ARTIFACTS / "figures_asset.png"), full_page=True)
    page.keyboard.press("Escape")


def sensor_page(page, base: str, tick: dict) -> None:
    # Every skipped tick reads "0 runs requested" in Dagster's list; the one that alerted says so in its
    # details (its skip reason), opened from its row.
    page.goto(f"{base}/locations/persona_assets.definitions/sensors/failed_check_alerts", wait_until="networkidle")
    when = datetime.fromtimestamp(tick["timestamp"], tz=timezone.utc).strftime("%b %-d, %-I:%M:%S %p")
    row = page.locator("tr", has_text=when).first
    row.wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "sensor_ticks.png"), full_page=True)
    row.get_by_text("0 runs requested").last.click()
    page.get_by_role("dialog").get_by_text("Skip reason: ALERTS SENT: 2 alert(s) sent").wait_for(timeout=30_000)
    page.wait_for_timeout(500)  # the dialog fades in
    page.screenshot(path=str(ARTIFACTS / "sensor_tick_alerted.png"))
    page.get_by_role("button", name="Close").click()


def jobs_page(page, base: str) -> None:
    page.goto(f"{base}/jobs", wait_until="networkidle")
    for job in ("ci", "demo", "full_study", "reanalyse_study"):
        page.get_by_text(job, exact=True).first.wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "scenario_jobs.png"))


class Phases:
    """Wall time of each phase of the test, written to test-artifacts/ui/timings.txt (what the UI costs)."""

    def __init__(self) -> None:
        self.start = self.last = time.monotonic()
        self.lines: list[str] = []

    def done(self, name: str) -> None:
        now = time.monotonic()
        self.lines.append(f"{name:<52} {now - self.last:6.1f} s")
        self.last = now

    def write(self) -> None:
        self.lines.append(f"{'total':<52} {time.monotonic() - self.start:6.1f} s")
        (ARTIFACTS / "timings.txt").write_text("\n".join(self.lines) + "\n")


def test_ui_tells_the_story(dagster_dev, tmp_path):
    from playwright.sync_api import sync_playwright

    base = dagster_dev
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    phases = Phases()
    kill = {"kill_gate_verdicts": {"config": STRICTEST_KILL_GATES}}
    launched = time.time()
    first = launch_and_wait(base, extra_ops=kill)
    phases.done("run 1 (launch to SUCCESS)")
    # The second, identical run starts at once; the sensor (every 15 s) sees the first run's end meanwhile,
    # or both ends in one tick: either way one tick alerts (2 alerts) and the second run's failures are
    # known ones.
    second = launch_and_wait(base, extra_ops=kill)
    phases.done("run 2, identical (launch to SUCCESS)")
    # Every invariant of the divergences ran in the last run and passed, as the UI's checks tab shows.
    statuses = check_statuses(base, "divergence_matrices")
    assert {name: statuses.get(name) for name in CHECKS} == {name: (second, "SUCCEEDED", True) for name in CHECKS}

    assert_refused_launches(base)
    # The assets' latest run is still the last good one: nothing marks them failed.
    for info in latest_info(base, ["divergence_matrices", "eval_set"]):
        assert info["latestRun"] == {"runId": second, "status": "SUCCESS"}, info
        assert info["latestMaterialization"]["runId"] == second
    phases.done("two launches refused, latest runs read")
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
        # Timestamps as the test reads them: UTC, US English ("Dec 2, 10:35:26 AM").
        page = browser.new_page(viewport={"width": 2800, "height": 1800}, timezone_id="UTC", locale="en-US")
        catalog_lineage_and_checks(page, base)
        phases.done("pages: catalog, lineage, checks")
        runs_and_run_page(page, base, second)
        phases.done("pages: runs list, run page, tags")
        divergence_matrices_pages(page, base, second)
        phases.done("pages: divergence_matrices overview, events")
        figures_page(page, base)
        phases.done("page: figures previews")
        jobs_page(page, base)
        phases.done("page: jobs")
        # The sensor ticks every 15 s; by now it has seen both runs end (else wait): the first run's end
        # alerted (2 alerts), the second's failures were known ones. Whether one tick saw both or each its
        # own, exactly one tick alerted.
        tick = wait_for_tick(base, launched, "ALERTS SENT")
        assert tick["skipReason"].startswith("ALERTS SENT: 2 alert(s) sent"), tick
        wait_for_tick(base, launched, "2 known failure(s) seen again")
        assert [t for t in ticks_since(base, launched) if "ALERTS SENT" in (t["skipReason"] or "")] == [tick]
        assert len((tmp_path / "data" / "alerts.jsonl").read_text().splitlines()) == 2  # none for run 2
        phases.done("alert ticks read")
        sensor_page(page, base, tick)
        phases.done("page: sensor ticks, alerting tick")
        browser.close()
    phases.write()
    assert first != second
