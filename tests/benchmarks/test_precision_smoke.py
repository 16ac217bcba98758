"""The precision benchmark runs end to end on a tiny random Qwen2 on the CPU (no timing asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_precision_benchmark_separates_scoring_and_generation_and_prints_the_cost():
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "precision.py"),
            "--model",
            "random-7b",
            "--personas",
            "software_engineer,villain,assistant",
            "--n-questions",
            "2",
            "--max-new-tokens",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "CPU" in out and "== (a) scoring" in out and "== (b) generation" in out
    assert "flips the run would have called findings" in out and "× the bf16 time" in out
