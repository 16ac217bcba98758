"""The scale benchmarks run end to end on CPU with tiny settings (no timing asserted)."""

from __future__ import annotations

from benchmarks import gpu_scale
from tests.benchmarks.in_process import run_main


def test_gpu_scale_runs_tiny_on_cpu(capsys, monkeypatch):
    argv = ["--tiny", "--gpus", "1,2", "--personas", "5", "--sources", "2", "--questions", "1"]
    out = run_main(gpu_scale.main, argv, capsys, monkeypatch)
    assert "sequences 10 (5 per response)" in out  # 4 pairs + the generator, one pass
    assert "2 responses in both, max relative difference of a pair value 0.00e+00" in out
