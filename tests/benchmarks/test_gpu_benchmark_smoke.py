"""The GPU benchmark script runs end to end on CPU with its tiny config (no timing asserted)."""

from __future__ import annotations

import torch

from benchmarks import gpu_teacher_forcing
from tests.benchmarks.in_process import run_main


def script_main(argv: list[str]) -> None:
    """What `python benchmarks/gpu_teacher_forcing.py` runs (its `__main__` block)."""
    with torch.inference_mode():
        gpu_teacher_forcing.main(argv)


def test_benchmark_runs_tiny_on_cpu(capsys, monkeypatch):
    out = run_main(script_main, ["--tiny", "--responses", "2", "--skip", "naive,current"], capsys, monkeypatch)
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
