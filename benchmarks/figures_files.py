"""Benchmark: the figures step's files for the bundled study (7 figures), as the figures asset writes them.

Builds the figures of data/reference_study with the analysis the legacy assets run, then times
`charts.save_figures` (what the asset calls: each chart's spec, its PNG at scale 2, its HTML page
and its UI preview) chart by chart, after one warm-up chart (vl-convert's first drawing starts its
JavaScript engine). For comparison it also times what a preview cost when it was drawn again from
the chart (vl-convert at scale 1, the way before), without writing anything.

    PYTHONPATH=. python benchmarks/figures_files.py [--bootstrap 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.hardware import describe as hardware  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", type=int, default=200, help="resamples of the analysis behind the figures")
    args = parser.parse_args(argv)
    import vl_convert as vlc

    from persona_assets.analysis import charts
    from persona_assets.analysis.correlation_report import leakage_correlations
    from persona_assets.analysis.earlier_results import inputs_from_legacy_dir
    from persona_assets.analysis.figure_set import build_figures

    print(f"hardware: {hardware()}")
    inputs = inputs_from_legacy_dir(REPO / "data" / "reference_study")
    correlations, _, _ = leakage_correlations(inputs, n_boot=args.bootstrap, seed=0, n_perm=args.bootstrap)
    built = build_figures(inputs, correlations)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        first = next(iter(built))
        charts.save_figures({first: built[first]}, directory)  # warm-up
        total, drawn_again = 0.0, 0.0
        print(f"{'figure':<28} {'files+preview':>14} {'preview drawn again':>20}")
        for stem, chart in built.items():
            started = time.perf_counter()
            charts.save_figures({stem: chart}, directory)
            spent = time.perf_counter() - started
            started = time.perf_counter()
            vlc.vegalite_to_png(chart.to_json(), scale=1.0)
            again = time.perf_counter() - started
            total, drawn_again = total + spent, drawn_again + again
            print(f"{stem:<28} {spent:>12.3f} s {again:>18.3f} s")
        print(
            f"all {len(built)} figures: {total:.2f} s for the files and previews; drawing each preview again "
            f"would add {drawn_again:.2f} s"
        )


if __name__ == "__main__":
    main()
