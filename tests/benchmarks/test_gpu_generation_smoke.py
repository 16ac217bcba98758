"""The generation benchmark script runs end to end on CPU with its tiny config (no timing asserted)."""

from __future__ import annotations

from benchmarks import gpu_generation
from tests.benchmarks.in_process import run_main


def test_generation_benchmark_runs_tiny_on_cpu(capsys, monkeypatch):
    out = run_main(gpu_generation.main, ["--tiny"], capsys, monkeypatch)
    for line in (
        "== decode attention",
        "where the eager dynamic-cache loop's step goes",
        "ms/decode step",
        "fixed vs dynamic, all 24 steps: identical token sequences: 6/6",
        "fixed                    vs generate(), efficient SDPA: identical token sequences: 4/4",
        "== summary",
    ):
        assert line in out, f"missing {line!r} in benchmark output"
