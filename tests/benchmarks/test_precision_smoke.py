"""The precision benchmark runs end to end on a tiny random Qwen2 on the CPU (no timing asserted)."""

from __future__ import annotations

from benchmarks import precision
from tests.benchmarks.in_process import run_main


def test_precision_benchmark_separates_scoring_and_generation_and_prints_the_cost(capsys, monkeypatch):
    argv = ["--model", "random-7b", "--personas", "software_engineer,villain,assistant"]
    out = run_main(precision.main, [*argv, "--n-questions", "2", "--max-new-tokens", "8"], capsys, monkeypatch)
    assert "CPU" in out and "== (a) scoring" in out and "== (b) generation" in out
    assert "flips the run would have called findings" in out and "× the bf16 time" in out
