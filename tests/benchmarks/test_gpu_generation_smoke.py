"""The generation benchmark script runs end to end on CPU with its tiny config (no timing asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_generation_benchmark_runs_tiny_on_cpu():
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_generation.py"), "--tiny"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for line in (
        "== decode attention",
        "where the eager dynamic-cache loop's step goes",
        "ms/decode step",
        "fixed vs dynamic, all 24 steps: identical token sequences: 6/6",
        "fixed                    vs generate(), efficient SDPA: identical token sequences: 4/4",
        "== summary",
    ):
        assert line in out, f"missing {line!r} in benchmark output"
