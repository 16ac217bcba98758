"""The scale benchmarks run end to end on CPU with tiny settings (no timing asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}


def test_gpu_scale_runs_tiny_on_cpu():
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "gpu_scale.py"),
            "--tiny",
            "--gpus",
            "1,2",
            "--personas",
            "5",
            "--sources",
            "2",
            "--questions",
            "1",
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sequences 10 (5 per response)" in result.stdout  # 4 pairs + the generator, one pass
    assert "2 responses in both, max relative difference of a pair value 0.00e+00" in result.stdout
