"""The calibration benchmark runs end to end with tiny settings and prints hardware and rates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_calibration_benchmark_runs_tiny():
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "calibration.py"),
            "--sims",
            "20",
            "--perms",
            "19",
            "--boots",
            "19",
            "--only",
            "js_vs_cosine",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(REPO), "PATH": ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert out.startswith("hardware: ") and "20 simulations per scenario" in out
    assert "js_vs_cosine: null, persona effects" in out and "js_vs_leakage" not in out
    assert "mantel_p" in out and "scipy_spearman_p (independent pairs)" in out


def test_calibration_benchmark_runs_the_verdict_designs_tiny():
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "calibration.py"), "--skip-tests", "--designs", "3"],
        capture_output=True,
        text=True,
        timeout=600,
        env={"PYTHONPATH": str(REPO), "PATH": ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "== verdict designs: 3 simulations each" in out and "js_vs_cosine" not in out
    for line in (
        "study JS fixed, N=11, noise 0.8; std and max/min at 0.9 × threshold",
        "|ρ(JS, cosine)| = 0.81",
        "leakage null: dual-role personas",
        "max/min gate decided on the wrong side, CI alone",
        "difference persona bootstrap CI excludes 0",
    ):
        assert line in out
