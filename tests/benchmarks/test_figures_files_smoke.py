"""The figures benchmark runs on the bundled study and prints a line per figure (no timing asserted)."""

from __future__ import annotations

from benchmarks import figures_files


def test_figures_benchmark_prints_every_figure_and_the_hardware(capsys):
    figures_files.main(["--bootstrap", "20"])
    out = capsys.readouterr().out
    assert out.startswith("hardware: ")
    assert "js_vs_leakage" in out and "pair_js_uncertainty" in out
    assert "all 7 figures: " in out and "drawing each preview again would add" in out
    assert "with each PNG read back from the cache" in out
