"""Benchmark: the seeded bootstrap of one correlation at the study's size (550 pairs, 5 source
clusters of 110), row-resampled and cluster-resampled, 2,000 resamples each — what every
correlation in `leakage_correlations` costs. Prints the median and the range over repeats, and
the hardware. No threshold is asserted: this is a measurement, not a test.

    python benchmarks/bootstrap_cpu.py | tee benchmarks/results/bootstrap_cpu_<machine>.txt
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.hardware import cpu_model  # noqa: E402
from persona_assets.stats.correlate import correlate  # noqa: E402


def clustered_pairs(n_clusters: int, size: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs whose correlation varies between clusters (as directed leakage pairs by source)."""
    rng = np.random.default_rng(seed)
    xs, ys, labels = [], [], []
    for c in range(n_clusters):
        x = rng.normal(size=size)
        xs.append(x + c)
        ys.append([-0.5, 0.2, 1.0, 2.0, 0.0][c % 5] * x + 0.5 * c + rng.normal(scale=0.5, size=size))
        labels += [f"source{c}"] * size
    return np.concatenate(xs), np.concatenate(ys), np.array(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clusters", type=int, default=5)
    parser.add_argument("--cluster-size", type=int, default=110)
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    x, y, labels = clustered_pairs(args.clusters, args.cluster_size)
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, numpy {np.__version__}")
    print(
        f"pairs {len(x)} in {args.clusters} clusters, {args.n_boot} resamples, {args.repeats} repeats (after a warm-up)"
    )
    correlate(x, y, n_boot=10)  # imports and caches
    for label, clusters in (("rows", None), ("clusters", labels)):
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            correlate(x, y, clusters=clusters, n_boot=args.n_boot)
            seconds.append(time.perf_counter() - start)
        print(
            f"bootstrap by {label:8s}: median {statistics.median(seconds):.3f} s  (min {min(seconds):.3f}, max "
            f"{max(seconds):.3f})"
        )


if __name__ == "__main__":
    main()
