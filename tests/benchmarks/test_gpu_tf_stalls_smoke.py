"""The teacher-forcing stall benchmark runs end to end on CPU with its tiny config, also on code
imported from another directory; its trace arithmetic on hand-made intervals (no timing asserted)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks import gpu_tf_stalls
from benchmarks.gpu_tf_stalls import busy_within, merged_busy, short_name
from tests.benchmarks.in_process import run_main

REPO = Path(__file__).resolve().parents[2]


def test_stall_benchmark_runs_tiny_on_cpu_with_this_and_other_code(
    tmp_path, embedded_tokenizer_dir, capsys, monkeypatch
):
    """This checkout's code in the test's process; a copy of it in a fresh one (--code puts the copy first on the
    import path, before anything is imported)."""
    other = tmp_path / "code"
    for package in ("resources", "persona_assets"):
        shutil.copytree(REPO / package, other / package, ignore=shutil.ignore_patterns("__pycache__"))
    argv = ["--tiny", "--tokenizer", str(embedded_tokenizer_dir), "--passes", "1"]
    outputs = {
        "here": run_main(gpu_tf_stalls.main, [*argv, "--values-out", str(tmp_path / "here.json")], capsys, monkeypatch)
    }
    other_run = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "gpu_tf_stalls.py"),
            *argv,
            "--values-out",
            str(tmp_path / "other.json"),
            "--code",
            str(other),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""},
        timeout=600,
    )
    assert other_run.returncode == 0, other_run.stderr[-3000:]
    outputs["other"] = other_run.stdout
    values = {}
    for name, out in outputs.items():
        assert "8 responses of 8 tokens, 32 teacher-forced sequences" in out
        assert "timed pass 1:" in out and "8 cache writes" in out
        assert f"code: {other if name == 'other' else REPO} (resources)" in out
        values[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert values["here"] == values["other"]  # same code, same numbers


def test_trace_arithmetic():
    busy, gaps = merged_busy([(20, 30, "d"), (0, 10, "a"), (5, 12, "b"), (6, 8, "c"), (30, 31, "e"), (40, 41, "f")])
    assert busy == [(0, 12), (20, 31), (40, 41)]
    assert gaps == [(8, "b", "d"), (9, "e", "f")]  # (length, kernel ending last before, kernel after)
    assert busy_within(busy, 5, 25) == 12
    assert (
        short_name("void at::native::(anonymous namespace)::indexSelectLargeIndex<c10::BFloat16, long>(x)")
        == "indexSelectLargeIndex"
    )
    assert short_name("Memcpy HtoD (Pinned -> Device)") == "Memcpy HtoD (Pinned -> Device)"
