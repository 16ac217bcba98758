"""The Dask scaling benchmark runs end to end on CPU with tiny settings (no timing asserted)."""

from __future__ import annotations

from benchmarks import dask_scale
from tests.benchmarks.in_process import run_main


def test_dask_scale_runs_tiny_on_cpu(tmp_path, capsys, monkeypatch):
    argv = ["--tiny", "--gpus", "1,2", "--no-in-process", "--personas", "5", "--sources", "2", "--questions", "1"]
    out = run_main(dask_scale.main, [*argv, "--work-dir", str(tmp_path)], capsys, monkeypatch)
    assert "== dask, 2 worker(s) = 2 shard(s)" in out and "time to first step" in out
    assert "score_slice_shard[shard_1]: on cpu, 1 responses, 5 sequences" in out  # 4 pairs + the generator
    assert "speed-up vs 1 worker" in out
    assert "cache entries 1 vs 2 workers: 2 responses in both, max relative difference of a pair value 0.00e+00" in out
