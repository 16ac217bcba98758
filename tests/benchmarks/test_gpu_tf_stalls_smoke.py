"""The teacher-forcing stall benchmark runs end to end on CPU with its tiny config, also on code
imported from another directory; its trace arithmetic on hand-made intervals (no timing asserted)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.gpu_tf_stalls import busy_within, merged_busy, short_name

REPO = Path(__file__).resolve().parents[2]


def test_stall_benchmark_runs_tiny_on_cpu_with_this_and_other_code(tmp_path, embedded_tokenizer_dir):
    other = tmp_path / "code"
    for package in ("resources", "persona_assets"):
        shutil.copytree(REPO / package, other / package, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    values = {}
    for name, extra in (("here", []), ("other", ["--code", str(other)])):
        out_file = tmp_path / f"{name}.json"
        result = subprocess.run(
            [
                sys.executable,
                str(REPO / "benchmarks" / "gpu_tf_stalls.py"),
                "--tiny",
                "--tokenizer",
                str(embedded_tokenizer_dir),
                "--passes",
                "1",
                "--values-out",
                str(out_file),
                *extra,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert "8 responses of 8 tokens, 32 teacher-forced sequences" in result.stdout
        assert "timed pass 1:" in result.stdout and "8 cache writes" in result.stdout
        assert f"code: {other if extra else REPO} (resources)" in result.stdout
        values[name] = json.loads(out_file.read_text())
    assert values["here"] == values["other"]  # same code, same numbers


def test_trace_arithmetic():
    busy, gaps = merged_busy([(20, 30, "d"), (0, 10, "a"), (5, 12, "b"), (6, 8, "c"), (30, 31, "e"), (40, 41, "f")])
    assert busy == [(0, 12), (20, 31), (40, 41)]
    assert gaps == [(8, "b", "d"), (9, "e", "f")]  # (length, kernel ending last before, kernel after)
    assert busy_within(busy, 5, 25) == 12
    assert (
        short_name("void at::native::(anonymous namespace)::indexSelectLargeIndex<c10::BFloat16, long>(x)")
        == "indexSelectLargeIndex"
    )
    assert short_name("Memcpy HtoD (Pinned -> Device)") == "Memcpy HtoD (Pinned -> Device)"
