"""The GPU benchmark script runs end to end on CPU with its tiny config (no timing asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_benchmark_runs_tiny_on_cpu():
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "gpu_teacher_forcing.py"),
            "--tiny",
            "--responses",
            "2",
            "--skip",
            "naive,current",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for line in (
        "s/response",
        "padding share",
        "extrapolated full run",
        "near-identical",
        "noise floor",
        "identical token sequences to generate(): 4/4",
        "bf16 vs fp32",
        "== summary",
    ):
        assert line in out, f"missing {line!r} in benchmark output"
