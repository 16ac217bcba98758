"""Benchmark: the figures step's files for the bundled study (7 figures), as the figures asset writes them.

Builds the figures of data/reference_study with the analysis the legacy assets run, then times
`charts.save_figures` (what the asset calls: each chart's spec, its PNG at scale 2, its HTML page
and its UI preview) chart by chart, after one warm-up chart (vl-convert's first drawing starts its
JavaScript engine): first with an empty drawings cache (every PNG drawn), then again (every PNG read
back from the cache, `persona_assets.analysis.drawings`). For comparison it also times what a preview
cost when it was drawn again from the chart (vl-convert at scale 1, the way before), without writing
anything.

    PYTHONPATH=. python benchmarks/figures_files.py [--bootstrap 200]
"""

from __future__ import annotations

import argparse
import shutil
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
    from persona_assets.analysis.drawings import drawings_dir
    from persona_assets.analysis.correlation_report import leakage_correlations
    from persona_assets.analysis.earlier_results import inputs_from_legacy_dir
    from persona_assets.analysis.figure_set import build_figures

    print(f"hardware: {hardware()}")
    inputs = inputs_from_legacy_dir(REPO / "data" / "reference_study")
    correlations, _, _ = leakage_correlations(inputs, n_boot=args.bootstrap, seed=0, n_perm=args.bootstrap)
    built = build_figures(inputs, correlations)
    with tempfile.TemporaryDirectory() as tmp:
        directory, cache = Path(tmp) / "figures", Path(tmp) / "cache"
        first = next(iter(built))
        charts.save_figures({first: built[first]}, directory, cache_dir=cache)  # also caches the Vega bundle
        shutil.rmtree(drawings_dir(cache))  # no chart drawn yet
        total, read_back, drawn_again = 0.0, 0.0, 0.0
        print(f"{'figure':<28} {'files+preview':>14} {'PNG read back':>14} {'preview drawn again':>20}")
        for stem, chart in built.items():
            spent = timed(lambda: charts.save_figures({stem: chart}, directory, cache_dir=cache))
            cached = timed(lambda: charts.save_figures({stem: chart}, directory, cache_dir=cache))
            again = timed(lambda: vlc.vegalite_to_png(chart.to_json(), scale=1.0))
            total, read_back, drawn_again = total + spent, read_back + cached, drawn_again + again
            print(f"{stem:<28} {spent:>12.3f} s {cached:>12.3f} s {again:>18.3f} s")
        print(
            f"all {len(built)} figures: {total:.2f} s for the files and previews, {read_back:.2f} s with each PNG "
            f"read back from the cache; drawing each preview again would add {drawn_again:.2f} s"
        )


def timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
