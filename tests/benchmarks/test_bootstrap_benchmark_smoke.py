"""The bootstrap benchmark runs end to end (tiny settings; no timing asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bootstrap_benchmark_prints_both_figures_and_the_hardware():
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bootstrap_cpu.py"), "--n-boot", "20", "--repeats", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "CPUs" in result.stdout and "pairs 550 in 5 clusters" in result.stdout
    assert "bootstrap by rows" in result.stdout and "bootstrap by clusters" in result.stdout
