"""A new, shared DAGSTER_HOME initialised once as the README says: runs that start at the same instant
no longer race in Dagster's own SQLite set-up (without it, 3 of 3 such trials had a run fail with
`table runs already exists` or `UNIQUE constraint failed: alembic_version.version_num`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tests.conftest import REPO

INIT = "dagster instance migrate"
# Each process imports dagster first, says it is ready, then waits for the common go signal (a file the test
# creates once all of them are ready) before it opens the instance.
RUN_AT = """
import os, sys, time
import dagster as dg

@dg.asset
def one():
    return 1

barrier = sys.argv[1]
waited = not os.path.exists(os.path.join(barrier, "go"))
open(os.path.join(barrier, f"ready-{os.getpid()}"), "w").close()
while not os.path.exists(os.path.join(barrier, "go")):
    time.sleep(0.001)
print("waited" if waited else "late", flush=True)
sys.exit(0 if dg.materialize([one], instance=dg.DagsterInstance.get()).success else 1)
"""


def test_the_readme_says_how_to_initialise_a_shared_home():
    readme = (REPO / "README.md").read_text()
    assert f"DAGSTER_HOME=/abs/dir {INIT}" in readme


def test_runs_starting_together_on_an_initialised_home_all_succeed(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    subprocess.run(
        [sys.executable, "-m", "dagster", *INIT.split()[1:]], env=env, check=True, capture_output=True, timeout=300
    )
    assert {"history/runs.db", "history/runs/index.db", "schedules/schedules.db"} <= {
        p.relative_to(home).as_posix() for p in home.rglob("*.db")
    }
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", RUN_AT, str(barrier)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    deadline = time.monotonic() + 300
    while len(list(barrier.glob("ready-*"))) < len(runs) and time.monotonic() < deadline:
        if any(run.poll() is not None for run in runs):
            break  # one ended before the start: its output below says why
        time.sleep(0.01)
    (barrier / "go").touch()  # all three start together
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    for run, output in zip(runs, outputs):
        assert run.returncode == 0, output[-2000:]
        assert output.startswith("waited"), output[-2000:]  # it was ready before the go signal: they started together
