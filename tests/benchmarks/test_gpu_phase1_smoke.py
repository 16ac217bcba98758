"""The Phase-1 benchmark runs end to end on CPU with its tiny config, and its deferred stages run
from the saved inputs (no timing asserted)."""

from __future__ import annotations

import pytest

from benchmarks import gpu_phase1
from tests.benchmarks.in_process import run_main


@pytest.fixture
def run_phase1(capsys, monkeypatch):
    """The benchmark with these arguments, in this process; what it printed."""
    return lambda *args: run_main(gpu_phase1.main, list(args), capsys, monkeypatch)


def test_phase1_tiny_on_cpu_then_deferred_analysis(tmp_path, embedded_tokenizer_dir, run_phase1):
    saved = tmp_path / "saved"
    out = run_phase1(
        "--tiny",
        "--tokenizer",
        str(embedded_tokenizer_dir),
        "--defer-analysis",
        "--save-dir",
        str(saved),
        "--work-dir",
        str(tmp_path / "gpu"),
    )
    for stage in ("eval_set", "generations", "persona_cosine", "divergences"):
        assert f"[stage] {stage}" in out
    assert "8 responses, 32 teacher-forced sequences" in out
    assert "not run here: aggregation (--defer-analysis)" in out
    assert (saved / "phase1_state.json").is_file()

    out = run_phase1("--analysis-from", str(saved), "--skip-figures", "--work-dir", str(tmp_path / "cpu"))
    assert "[stage] aggregation" in out and "[stage] analysis" in out
    assert "kill gates: discrimination" in out
    assert "phase-1 without model load" in out and "== goals" in out
    assert (tmp_path / "cpu" / "outputs" / "divergence_per_response.csv").is_file()


def test_phase1_tiny_compares_shared_prefixes_with_whole_sequences(tmp_path, embedded_tokenizer_dir, run_phase1):
    import re

    out = run_phase1(
        "--tiny",
        "--tokenizer",
        str(embedded_tokenizer_dir),
        "--defer-analysis",
        "--tf-variants",
        "eager,shared",
        "--noise-floor-samples",
        "1",
        "--work-dir",
        str(tmp_path / "gpu"),
    )
    assert "[stage] (divergences, shared, pass 2)" in out and "[stage] (noise floor, first variant's path)" in out
    assert "phase-1 without model load, shared, pass 2 teacher forcing" in out
    for name in ("js", "kl_ab", "kl_ba"):
        found = re.search(
            rf"shared vs eager: response-mean {name} max abs difference (\S+) nats, max relative (\S+) over (\d+) "
            r"pairs",
            out,
        )
        assert found, out[-3000:]
        assert int(found.group(3)) == 8 * 3  # 8 responses, 3 pair-own pairs each
        assert float(found.group(2)) < 1e-4  # float32 rounding only (tiny model, CPU)
    assert re.search(r"noise floor \(eager, 1 responses re-scored in other batch compositions\): JS \S+ nats abs", out)
