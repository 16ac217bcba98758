"""Benchmark: a scenario run launched from the UI, fresh and then fully cached, timed as its user sees it.

Starts `dagster dev` (webserver + daemon) on 127.0.0.1 with a fresh DAGSTER_HOME and data directory,
then launches the `ci` job twice through the webserver's GraphQL API with the job's own settings
(what the Launchpad sends when you press "Launch Run" on the `ci` job): the first run finds every
cache of the data directory empty (generations, divergences, noise floor), the second finds
everything cached. For each run:
  launch → done    wall time from the launch request to the moment the run's status is final, as a
                   person watching the run page sees it (status polled every 0.25 s);
  queued           launch request → run started (the daemon dequeues it and starts its worker);
  run              Dagster's own start → end of the run (the worker process's imports included);
  steps            each step's start → end from the run's step statistics, the slowest first.
The embedded model's conversion cache (~/.cache, once per machine) is not reset: the line
"conversion cache" says whether it was there. "Everything cached" means the caches of the data
directory: persona_cosine (hidden states) and the figures are computed again, and the model is loaded
again (a new run is a new process). The load average is printed: on a shared machine it explains slow
figures.

    PYTHONPATH=. python benchmarks/ui_run_times.py > benchmarks/results/ui_run_times_cpu_2core.txt
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import hardware  # noqa: E402
from persona_assets.jobs import SCENARIOS, scenario_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LOCATION = {"repositoryLocationName": "persona_assets.definitions", "repositoryName": "__repository__"}
LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""
RUN = """
query Run($id: ID!) {
  runOrError(runId: $id) {
    ... on Run { status creationTime startTime endTime stepStats { stepKey startTime endTime status } }
  }
}
"""
FINAL = ("SUCCESS", "FAILURE", "CANCELED")


def log(msg: str = "") -> None:
    print(msg, flush=True)


def graphql(base: str, query: str, variables: dict) -> dict:
    request = urllib.request.Request(
        f"{base}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["data"]


def start_dagster_dev(root: Path, env: dict) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dagster = str(Path(sys.executable).parent / "dagster")
    command = [dagster, "dev", "-m", "persona_assets.definitions", "-h", "127.0.0.1", "-p", str(port)]
    log_file = open(root / "dagster_dev.log", "w")  # noqa: SIM115 - closed when the process ends
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            with urllib.request.urlopen(f"{base}/server_info", timeout=5):
                return process, base
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("dagster dev did not come up:\n" + (root / "dagster_dev.log").read_text()[-3000:])
            time.sleep(0.5)


def launch_and_time(base: str, job: str, run_config: dict) -> dict:
    params = {"selector": {**LOCATION, "jobName": job}, "runConfigData": run_config, "mode": "default"}
    requested = time.time()
    launched = graphql(base, LAUNCH, {"params": params})["launchRun"]
    if launched["__typename"] != "LaunchRunSuccess":
        raise SystemExit(f"launch refused: {launched}")
    run_id = launched["run"]["runId"]
    while True:
        run = graphql(base, RUN, {"id": run_id})["runOrError"]
        if run["status"] in FINAL:
            seen = time.time()
            break
        time.sleep(0.25)
    return {"run_id": run_id, "requested": requested, "seen_final": seen, **run}


def load_average() -> str:
    """The machine's 1/5/15-minute load averages (other work on a shared machine slows every figure)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def report(name: str, timing: dict, top: int) -> None:
    log(f"-- {name}: run {timing['run_id'][:8]}, status {timing['status']}; load average after: {load_average()}")
    log(f"  launch → done (as the run page shows it)   {timing['seen_final'] - timing['requested']:7.2f} s")
    log(f"  queued (launch → run started)              {timing['startTime'] - timing['requested']:7.2f} s")
    log(f"  run (Dagster's start → end)                {timing['endTime'] - timing['startTime']:7.2f} s")
    steps = [s for s in timing["stepStats"] if s["startTime"] and s["endTime"]]
    steps.sort(key=lambda s: s["endTime"] - s["startTime"], reverse=True)
    for step in steps[:top]:
        log(f"    {step['stepKey']:<58} {step['endTime'] - step['startTime']:7.2f} s")
    rest = steps[top:]
    if rest:
        together = sum(s["endTime"] - s["startTime"] for s in rest)
        log(f"    {f'{len(rest)} other steps (checks, small assets), together':<58} {together:7.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job", default="ci", choices=sorted(SCENARIOS))
    parser.add_argument("--top", type=int, default=6, help="steps listed one by one")
    args = parser.parse_args()
    run_config = scenario_config(SCENARIOS[args.job][0])
    conversion_cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "persona-divergence"
    root = Path(tempfile.mkdtemp(prefix="ui-run-times-"))
    home = root / "dagster_home"
    home.mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "PERSONA_DATA_DIR": str(root / "data"),
        "PERSONA_FIGURES_DIR": str(root / "figures"),
    }
    log("== a scenario job launched from the UI (dagster dev, GraphQL launchRun as the Launchpad sends it)")
    log(f"hardware: {hardware.describe()}")
    log(f"job: {args.job} ({SCENARIOS[args.job][0]}); model: {env.get('PERSONA_MODEL', 'embedded')}")
    log(f"conversion cache: {'present' if conversion_cache.exists() else 'absent'} ({conversion_cache})")
    log(f"load average (1/5/15 min) at start: {load_average()} on {os.cpu_count()} logical cores")
    started = time.monotonic()
    process, base = start_dagster_dev(root, env)
    log(f"dagster dev up in {time.monotonic() - started:.1f} s")
    try:
        report("fresh run (empty data directory)", launch_and_time(base, args.job, run_config), args.top)
        report("same run again (everything cached)", launch_and_time(base, args.job, run_config), args.top)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
