"""Expensive runs and files that several tests read, made once per suite (shared by the pytest-xdist workers).

`ci_cli_run`: `dagster asset materialize --select '*' -c configs/ci.yaml` through the CLI on the embedded
model, as the README's quick start types it. tests/test_embedded_model.py asserts on its outputs and summary;
tests/test_readme_examples.py runs the README's other selections on top of a copy of it. It was two runs of
the whole graph through the CLI (the second on a tiny model); on the 2-core machine, bound by CPU, each costs
about 15–30 CPU-seconds.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO


@dataclass(frozen=True)
class CliRun:
    """A finished CLI run: its folder (DAGSTER_HOME, data and figures inside), exit status and output."""

    root: Path
    returncode: int
    output: str

    def env(self, root: Path | None = None) -> dict[str, str]:
        """The environment of the run, or of a copy of it under `root`."""
        return run_env(root or self.root)


def run_env(root: Path) -> dict[str, str]:
    """This process's environment with DAGSTER_HOME, data and figures under `root`, and the embedded model (no
    PERSONA_MODEL)."""
    env = {
        **os.environ,
        "DAGSTER_HOME": str(root / "dagster_home"),
        "PERSONA_DATA_DIR": str(root / "data"),
        "PERSONA_FIGURES_DIR": str(root / "figures"),
    }
    env.pop("PERSONA_MODEL", None)
    return env


def suite_folder(tmp_path_factory) -> Path:
    """A folder every worker of this suite shares: the parent of the workers' own base folders under xdist."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def materialize_command(selection: str, *configs: str) -> list[str]:
    """`dagster asset materialize -m persona_assets.definitions --select <selection> -c <config>...`."""
    dagster = str(Path(sys.executable).parent / "dagster")
    return [
        dagster,
        "asset",
        "materialize",
        "-m",
        "persona_assets.definitions",
        "--select",
        selection,
        *(word for config in configs for word in ("-c", config)),
    ]


def made_once(tmp_path_factory, name: str, make: Callable[[Path], None]) -> Path:
    """The folder `name` of this suite, filled by `make(folder)` in the first worker that asks; the others wait for
    it under a lock. A `make` that raises leaves no mark, so the next worker to ask tries again."""
    folder = suite_folder(tmp_path_factory) / name
    done = folder / ".made"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        if not done.is_file():
            make(folder)
            done.touch()
    return folder


def ci_cli_run(tmp_path_factory) -> CliRun:
    """The whole graph on configs/ci.yaml through the CLI, run once per suite (`made_once`); every worker reads the
    exit status and output it recorded."""

    def run(root: Path) -> None:
        (root / "dagster_home").mkdir(exist_ok=True)
        command = materialize_command("*", "configs/ci.yaml")
        done = subprocess.run(command, cwd=REPO, env=run_env(root), capture_output=True, text=True, timeout=900)
        (root / "finished.json").write_text(
            json.dumps({"returncode": done.returncode, "output": done.stdout + done.stderr})
        )

    root = made_once(tmp_path_factory, "ci-cli-run", run)
    finished = json.loads((root / "finished.json").read_text())
    return CliRun(root, finished["returncode"], finished["output"])
