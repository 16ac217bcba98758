"""The webserver's GraphQL API as the UI uses it: launch runs (as the Launchpad does), read their status,
the checks of an asset, the latest run of assets and the alert sensor's ticks."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from tests.test_definitions import EXPECTED_ASSETS

LOCATION = {"repositoryLocationName": "persona_assets.definitions", "repositoryName": "__repository__"}
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
RUN_COUNT = "query { runsOrError { ... on Runs { count } } }"
CHECK_STATUSES = """
query Checks($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode { assetChecksOrError { ... on AssetChecks { checks {
      name executionForLatestMaterialization { runId status evaluation { success } }
    } } } }
  }
}
"""
LATEST_RUN = """
query Latest($keys: [AssetKeyInput!]!) {
  assetsLatestInfo(assetKeys: $keys) { latestRun { runId status } latestMaterialization { runId } }
}
"""
SENSOR_TICKS = """
query Ticks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    ... on Sensor { sensorState { ticks(limit: 25) { status timestamp skipReason } } }
  }
}
"""
SMALL_RUN = {
    "eval_set": {"config": {"personas": ["villain", "comedian", "assistant"], "n_questions": 1}},
    "generations": {"config": {"max_new_tokens": 6}},
    "persona_cosine": {"config": {"layers": [1, 2]}},
    "leakage_correlations": {"config": {"n_bootstrap": 50}},
    "cosine_precheck": {"config": {"n_bootstrap": 50}},
}


def graphql(base: str, query: str, variables: dict) -> dict:
    request = urllib.request.Request(
        f"{base}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:  # the webserver answers a PythonError with status 500
        return json.loads(error.read())


def launch(base: str, job: str, run_config: dict, asset_selection: list[str] | None = None) -> dict:
    """Launch `job` as the Launchpad does; the mutation's answer (a run, or why none was started)."""
    selector = {**LOCATION, "jobName": job}
    if asset_selection is not None:
        selector["assetSelection"] = [{"path": [name]} for name in asset_selection]
    params = {"selector": selector, "runConfigData": run_config, "mode": "default"}
    return graphql(base, LAUNCH_RUN, {"params": params})["data"]["launchRun"]


def launch_and_wait(base: str, extra_ops: dict | None = None) -> str:
    """Materialize the whole graph (the asset job, as "Materialize all" does) on a small run; its id."""
    run_config = {"ops": {**SMALL_RUN, **(extra_ops or {})}}
    launched = launch(base, "__ASSET_JOB", run_config, sorted(EXPECTED_ASSETS))
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = graphql(base, RUN_STATUS, {"id": run_id})["data"]["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            assert status == "SUCCESS", f"run {run_id} ended {status}"
            return run_id
        time.sleep(1)
    raise AssertionError(f"run {run_id} did not finish in time")


def run_count(base: str) -> int:
    return graphql(base, RUN_COUNT, {})["data"]["runsOrError"]["count"]


def check_statuses(base: str, asset: str) -> dict[str, tuple[str, str, bool]]:
    """What the webserver reports for each check of `asset`: (run id, status, evaluation passed)."""
    node = graphql(base, CHECK_STATUSES, {"key": {"path": [asset]}})["data"]["assetNodeOrError"]
    out = {}
    for check in node["assetChecksOrError"]["checks"]:
        execution = check["executionForLatestMaterialization"] or {}
        out[check["name"]] = (
            execution.get("runId"),
            execution.get("status"),
            (execution.get("evaluation") or {}).get("success"),
        )
    return out


def latest_info(base: str, assets: list[str]) -> list[dict]:
    """Each asset's latest run (id, status) and the run of its latest materialization."""
    keys = [{"path": [name]} for name in assets]
    return graphql(base, LATEST_RUN, {"keys": keys})["data"]["assetsLatestInfo"]


def ticks_since(base: str, since: float) -> list[dict]:
    """The alert sensor's finished ticks that started after `since` (epoch seconds)."""
    selector = {**LOCATION, "sensorName": "failed_check_alerts"}
    sensor = graphql(base, SENSOR_TICKS, {"selector": selector})["data"]["sensorOrError"]
    return [t for t in sensor["sensorState"]["ticks"] if t["timestamp"] > since and t["status"] != "STARTED"]


def wait_for_tick(base: str, since: float, says: str, timeout_s: float = 240) -> dict:
    """The first tick since `since` whose status message contains `says` (the sensor ticks every 15 s)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [t for t in ticks_since(base, since) if says in (t["skipReason"] or "")]
        if found:
            return min(found, key=lambda t: t["timestamp"])
        time.sleep(2)
    raise AssertionError(f"no alert-sensor tick said {says!r}: {ticks_since(base, since)}")
