"""Correlation statistics for "does similarity predict marker leakage?".

Everything here is plain numpy/scipy so a researcher can call it from a notebook:

- `correlate`: Spearman and Pearson with p-values and a seeded percentile bootstrap CI, resampling
  either pairs (rows) or whole clusters (e.g. all pairs that share a source persona).
- `dependent_correlation_test`: do two predictors (JS and cosine) correlate differently with the
  same outcome (leakage)? Steiger (1980) / Meng, Rosenthal & Rubin (1992).
- `partial_correlation`: correlation of x and y once covariates are regressed out.
- `within_group_correlations`: per-group correlations and a pooled / within / between split, since
  a pooled correlation over 5 source personas can be driven by differences between the sources.

Undefined results (n < 3, constant input) are reported as ``None`` with a note rather than NaN or an
exception, because they are expected outcomes on small or degenerate data, and ``None`` survives a
JSON round trip where NaN does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from persona_assets.runs.errors import InputError

# Re-exported (see __all__): the comparison and group statistics live in their own modules, which import only
# stats.helpers, so importing them here makes no cycle.
from persona_assets.stats.dependent_correlations import MRR, STEIGER, dependent_correlation_test, partial_correlation
from persona_assets.stats.grouped_correlations import (
    between_within_decomposition,
    sign_agreement,
    within_group_correlations,
)
from persona_assets.stats.helpers import ArrayLike
from persona_assets.stats.helpers import json_float as _json_float
from persona_assets.stats.helpers import paired as _paired
from persona_assets.stats.helpers import percentile_ci as _percentile_ci
from persona_assets.stats.helpers import point_estimates as _point_estimates
from persona_assets.stats.helpers import rowwise_pearson as _rowwise_pearson
from persona_assets.stats.helpers import rowwise_weighted_pearson as _rowwise_weighted_pearson
from persona_assets.stats.helpers import weighted_midranks as _weighted_midranks

# Below this many clusters a cluster bootstrap can only produce a handful of distinct resamples,
# so its CI is coarse; we say so in the note instead of refusing.
FEW_CLUSTERS = 10


@dataclass(frozen=True)
class Correlation:
    """Spearman and Pearson correlation of two variables, with bootstrap 95% CIs.

    ``n`` counts the pairs actually used (after dropping pairs with a NaN in either variable);
    ``n_dropped_nan`` counts the dropped ones. ``bootstrap_unit`` is ``"pair"`` for a row
    bootstrap or ``"source-cluster"``-like labels for a cluster bootstrap.
    """

    n: int
    spearman_rho: float | None
    spearman_p: float | None
    pearson_r: float | None
    pearson_p: float | None
    spearman_ci95: tuple[float, float] | None
    pearson_ci95: tuple[float, float] | None
    bootstrap_unit: str
    n_boot: int
    seed: int
    note: str | None
    n_dropped_nan: int = 0
    n_clusters: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: plain floats, lists for CIs, ``None`` for anything undefined."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = [_json_float(v) for v in value]
            elif isinstance(value, float):
                out[key] = _json_float(value)
        return out


def correlate(
    x: ArrayLike,
    y: ArrayLike,
    *,
    clusters: Sequence[Any] | np.ndarray | pd.Series | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    cluster_unit: str = "source-cluster",
) -> Correlation:
    """Spearman and Pearson correlation of ``x`` and ``y`` with seeded bootstrap 95% CIs.

    Pairs with a NaN in ``x`` or ``y`` are dropped first. Without ``clusters`` the bootstrap
    resamples pairs; with ``clusters`` (one label per pair, e.g. the source persona) it resamples
    whole clusters, which is the honest choice when pairs sharing a source are not independent.
    The p-values are scipy's, which assume independent pairs whatever ``clusters`` says.
    """
    if n_boot < 0:
        raise InputError(f"n_boot must be >= 0, got {n_boot}")
    xa, ya, keep = _paired(x, y)
    labels: np.ndarray | None = None
    if clusters is not None:
        cl = pd.Series(list(clusters) if not isinstance(clusters, pd.Series) else clusters)
        if len(cl) != xa.size:
            raise InputError(f"clusters has {len(cl)} labels but x and y have {xa.size} values")
        if cl.isna().any():
            raise InputError("clusters: contains missing labels")
        labels = cl.to_numpy()[keep]
    n_dropped = int((~keep).sum())
    xa, ya = xa[keep], ya[keep]
    n = int(xa.size)

    rho, p_rho, r, p_r, note = _point_estimates(xa, ya)
    notes: list[str] = [note] if note else []
    if n_dropped:
        notes.append(f"{n_dropped} pair(s) with NaN dropped")

    unit = "pair" if labels is None else cluster_unit
    n_clusters: int | None = None
    rho_ci: tuple[float, float] | None = None
    r_ci: tuple[float, float] | None = None

    if rho is not None and n_boot > 0:
        rng = np.random.default_rng(seed)
        if labels is None:
            idx = rng.integers(0, n, size=(n_boot, n))
            bx, by = xa[idx], ya[idx]
            boot_r = _rowwise_pearson(bx, by)
            # Rank each resample once, all resamples at a time: Spearman = Pearson of ranks.
            boot_rho = _rowwise_pearson(stats.rankdata(bx, axis=1), stats.rankdata(by, axis=1))
        else:
            codes, uniques = pd.factorize(labels)
            n_clusters = int(len(uniques))
            if n_clusters < 2:
                boot_r = boot_rho = np.full(n_boot, np.nan)
                notes.append("fewer than 2 clusters: cluster bootstrap undefined")
            else:
                draws = rng.integers(0, n_clusters, size=(n_boot, n_clusters))
                offsets = (np.arange(n_boot) * n_clusters)[:, None]
                counts = np.bincount((draws + offsets).ravel(), minlength=n_boot * n_clusters).reshape(
                    n_boot, n_clusters
                )
                # A cluster drawn k times contributes each of its pairs k times.
                w = counts[:, codes].astype(float)
                tiled_x = np.broadcast_to(xa, w.shape)
                tiled_y = np.broadcast_to(ya, w.shape)
                boot_r = _rowwise_weighted_pearson(tiled_x, tiled_y, w)
                boot_rho = _rowwise_weighted_pearson(_weighted_midranks(xa, w), _weighted_midranks(ya, w), w)
                if n_clusters < FEW_CLUSTERS:
                    notes.append(f"only {n_clusters} clusters: the cluster-bootstrap CI is coarse")
        degenerate = int(np.isnan(boot_rho).sum())
        if 0 < degenerate < n_boot:
            notes.append(f"{degenerate} of {n_boot} resamples were constant and were skipped")
        rho_ci = _percentile_ci(boot_rho)
        r_ci = _percentile_ci(boot_r)
    elif labels is not None:
        n_clusters = int(len(pd.unique(labels)))

    if labels is not None and rho is not None:
        notes.append("p-values assume independent pairs; prefer the cluster-bootstrap CI")

    return Correlation(
        n=n,
        spearman_rho=rho,
        spearman_p=p_rho,
        pearson_r=r,
        pearson_p=p_r,
        spearman_ci95=rho_ci,
        pearson_ci95=r_ci,
        bootstrap_unit=unit,
        n_boot=int(n_boot),
        seed=int(seed),
        note="; ".join(notes) if notes else None,
        n_dropped_nan=n_dropped,
        n_clusters=n_clusters,
    )


__all__ = [
    "Correlation",
    "correlate",
    "MRR",
    "STEIGER",
    "dependent_correlation_test",
    "partial_correlation",
    "within_group_correlations",
    "between_within_decomposition",
    "sign_agreement",
]
