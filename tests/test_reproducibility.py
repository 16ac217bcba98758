"""Re-materializing with unchanged inputs and code gives byte-identical files on CPU; two runs with
different settings writing one data directory at once leave every file whole and one run's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests import graph_runner
from tests.conftest import REPO
from tests.test_graph import PERSONAS, materialize, run_config, write_leakage

# Files that may legitimately differ between two runs. None: everything under outputs/ and
# figures/ is an analysis result, a table or a figure, so each must reproduce exactly.
EXCLUDED_NAMES: set[str] = set()


@contextmanager
def _dirs(run_dir: Path) -> Iterator[dict[str, str]]:
    """PERSONA_DATA_DIR / PERSONA_FIGURES_DIR under `run_dir` (for a module-scoped run)."""
    env = {"PERSONA_DATA_DIR": str(run_dir / "data"), "PERSONA_FIGURES_DIR": str(run_dir / "figures")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _results(run_dir: Path) -> dict[str, bytes]:
    """Every file under outputs/ (asset JSON, CSV tables) and figures/ (PNG, HTML) of a run."""
    out = {}
    for part, root in (("outputs", run_dir / "data" / "outputs"), ("figures", run_dir / "figures")):
        for p in sorted(root.rglob("*")):
            if p.is_file() and p.name not in EXCLUDED_NAMES:
                out[f"{part}/{p.relative_to(root)}"] = p.read_bytes()
    return out


def _differing(a: dict[str, bytes], b: dict[str, bytes]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _in_subprocess(
    run_dir: Path, tiny_model_dir: Path, leakage: str, part: str, hash_seed: str, n_bootstrap: int | None = None
) -> subprocess.Popen:
    env = {
        **os.environ,
        "PERSONA_DATA_DIR": str(run_dir / "data"),
        "PERSONA_FIGURES_DIR": str(run_dir / "figures"),
        # Another string-hash seed than this process: set and dict-of-set orders change with it.
        "PYTHONHASHSEED": hash_seed,
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.graph_runner",
            str(tiny_model_dir),
            leakage,
            part,
            *([str(n_bootstrap)] if n_bootstrap else []),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait(process: subprocess.Popen) -> None:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-4000:]


@pytest.fixture(scope="module")
def first_run(tiny_model_dir, tmp_path_factory) -> tuple[Path, str, dict[str, bytes]]:
    base = tmp_path_factory.mktemp("repro")
    leakage = write_leakage(
        base / "leak.csv",
        [
            (s, t, round(0.1 + 0.05 * i + 0.01 * j, 3))
            for i, s in enumerate(PERSONAS)
            for j, t in enumerate(PERSONAS)
            if s != t
        ],
    )
    run_dir = base / "first"
    with _dirs(run_dir):
        assert materialize(
            tiny_model_dir, run_config(run_dir, leakage_rates={"config": {"leakage_path": leakage}})
        ).success
    files = _results(run_dir)
    assert {
        "outputs/figures.json",
        "outputs/divergence_per_response.csv",
        "figures/js_vs_leakage.png",
        "figures/js_vs_leakage.html",
    } <= set(files)
    return run_dir, leakage, files


def test_a_fresh_directory_in_another_process_gives_the_same_bytes(first_run, tiny_model_dir):
    """Two fresh processes under different string-hash seeds, each into a fresh directory. (Both are
    fresh processes, so neither inherits state a long test session may have left in its process.)"""
    run_dir, leakage, first = first_run
    dirs = [run_dir.parent / "second", run_dir.parent / "third"]
    for directory, seed in zip(dirs, ("0", "12345")):
        _wait(_in_subprocess(directory, tiny_model_dir, leakage, "all", hash_seed=seed))
    second, third = (_results(d) for d in dirs)
    assert set(second) == set(first)
    # Asset values record where their tables and figures are (absolute paths, which name the
    # run directory); with that one difference taken out, every byte agrees.
    normalise = lambda files, d: {k: v.replace(str(d).encode(), b"<run>") for k, v in files.items()}  # noqa: E731
    assert _differing(normalise(second, dirs[0]), normalise(third, dirs[1])) == []


def test_rematerializing_into_the_same_directory_gives_the_same_bytes(first_run, tiny_model_dir):
    run_dir, leakage, first = first_run
    with _dirs(run_dir):  # caches now hit; every file is written again
        assert materialize(
            tiny_model_dir, run_config(run_dir, leakage_rates={"config": {"leakage_path": leakage}})
        ).success
    assert _differing(first, _results(run_dir)) == []


def _poll_json_until(stop: threading.Event, root: Path, torn: list[str]) -> int:
    """Parse every JSON file under `root` again and again until `stop`; record any that does not."""
    reads = 0
    while not stop.is_set():
        for path in root.rglob("*.json"):
            try:
                json.loads(path.read_bytes())
                reads += 1
            except FileNotFoundError:
                continue
            except ValueError as exc:
                torn.append(f"{path.name}: {exc}")
    return reads


def test_two_concurrent_analysis_runs_with_different_settings_leave_each_file_whole_and_one_runs(
    first_run, tiny_model_dir
):
    run_dir, leakage, first = first_run
    # What the other run writes on its own: the same analysis with another bootstrap size, in a
    # copy of the directory, so its outputs differ from the first run's.
    other_dir = run_dir.parent / "other"
    shutil.copytree(run_dir, other_dir)
    with _dirs(other_dir):  # in this process: the bytes do not depend on the process or its hash seed (above)
        assert graph_runner.run(str(tiny_model_dir), leakage, "analysis", REPO, n_bootstrap=150)
    normalise = lambda files, d: {k: v.replace(str(d).encode(), b"<run>") for k, v in files.items()}  # noqa: E731
    mine, other = normalise(_results(run_dir), run_dir), normalise(_results(other_dir), other_dir)
    assert _differing(mine, other), "the two settings must write different content"

    stop, torn = threading.Event(), []
    with ThreadPoolExecutor(1) as pool:
        reads = pool.submit(_poll_json_until, stop, run_dir / "data" / "outputs", torn)
        runs = [
            _in_subprocess(run_dir, tiny_model_dir, leakage, "analysis", hash_seed="1"),
            _in_subprocess(run_dir, tiny_model_dir, leakage, "analysis", hash_seed="2", n_bootstrap=150),
        ]
        for process in runs:
            _wait(process)
        stop.set()
        assert reads.result() > 0
    assert torn == []  # no reader ever saw a partial JSON file
    after = normalise(_results(run_dir), run_dir)
    assert set(after) == set(mine)
    mixed = [name for name, data in after.items() if data not in (mine[name], other[name])]
    assert mixed == []  # each file is whole and exactly what one of the two runs writes
    # No temporary file of an interrupted write is left behind.
    assert not [p for p in run_dir.rglob("*.tmp")]
