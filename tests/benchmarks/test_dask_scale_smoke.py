"""The Dask scaling benchmark runs end to end on CPU with tiny settings (no timing asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}


def test_dask_scale_runs_tiny_on_cpu(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "dask_scale.py"),
            "--tiny",
            "--gpus",
            "1,2",
            "--no-in-process",
            "--personas",
            "5",
            "--sources",
            "2",
            "--questions",
            "1",
            "--work-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    out = result.stdout
    assert "== dask, 2 worker(s) = 2 shard(s)" in out and "time to first step" in out
    assert "score_slice_shard[shard_1]: on cpu, 1 responses, 5 sequences" in out  # 4 pairs + the generator
    assert "speed-up vs 1 worker" in out
    assert "cache entries 1 vs 2 workers: 2 responses in both, max relative difference of a pair value 0.00e+00" in out
