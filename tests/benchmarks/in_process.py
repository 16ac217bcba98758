"""Run a benchmark script's `main(argv)` in the test's own process, as `python benchmarks/<name>.py` would.

A smoke test in a fresh process paid 3–4 s of CPU to import torch and transformers and to load a model
class, on a two-core machine where the suite is bound by CPU. In-process the benchmark sees CPU only
(CUDA_VISIBLE_DEVICES empty), runs in the repository with the repository on PYTHONPATH for the processes
it starts, and cannot move the torch random state or the import path that later tests in this process start from.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_main(main: Callable[[list[str]], None], argv: list[str], capsys, monkeypatch: pytest.MonkeyPatch) -> str:
    """What the benchmark printed to stdout."""
    import torch

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # for the processes some benchmarks start
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "path", [*sys.path])  # a benchmark puts the repository first on it
    capsys.readouterr()  # only this benchmark's output
    with torch.random.fork_rng(devices=[]):
        main(argv)
    return capsys.readouterr().out
