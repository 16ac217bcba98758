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
# Each process imports dagster first, then waits for a common instant before it opens the instance.
RUN_AT = """
import sys, time
import dagster as dg

@dg.asset
def one():
    return 1

waited = time.time() < float(sys.argv[1])
while time.time() < float(sys.argv[1]):
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
    start = time.time() + 20  # time enough for three interpreters to import dagster on a busy machine
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", RUN_AT, str(start)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    for run, output in zip(runs, outputs):
        assert run.returncode == 0, output[-2000:]
        assert output.startswith("waited"), output[-2000:]  # it was ready before the instant: they started together
