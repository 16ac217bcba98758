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

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from persona_assets.runs.errors import InputError

ArrayLike = Sequence[float] | np.ndarray | pd.Series

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


def _json_float(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _as_1d_float(values: ArrayLike, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}: values must be numbers ({exc})") from exc
    if arr.ndim != 1:
        raise InputError(f"{name}: expected a 1-D sequence, got shape {arr.shape}")
    if np.isinf(arr).any():
        # Infinity is never a legitimate similarity or rate; it signals an upstream bug, and
        # silently dropping it (as we do with NaN = missing) would hide that bug.
        raise InputError(f"{name}: contains infinite values")
    return arr


def _paired(x: ArrayLike, y: ArrayLike, names: tuple[str, str] = ("x", "y")):
    xa = _as_1d_float(x, names[0])
    ya = _as_1d_float(y, names[1])
    if xa.shape != ya.shape:
        raise InputError(
            f"{names[0]} and {names[1]} differ in length ({xa.size} vs {ya.size})"
        )
    keep = ~(np.isnan(xa) | np.isnan(ya))
    return xa, ya, keep


def _paired_with_groups(x: ArrayLike, y: ArrayLike, groups: Sequence | pd.Series):
    """`_paired` plus one group label per value (as a numpy array); missing labels are an error."""
    xa, ya, keep = _paired(x, y)
    g = pd.Series(list(groups) if not isinstance(groups, pd.Series) else groups)
    if len(g) != xa.size:
        raise InputError(f"groups has {len(g)} labels but x and y have {xa.size} values")
    if g.isna().any():
        raise InputError("groups: contains missing labels")
    return xa, ya, g.to_numpy(), keep


def _is_constant(a: np.ndarray) -> bool:
    return a.size == 0 or bool(np.all(a == a[0]))


def _point_estimates(x: np.ndarray, y: np.ndarray) -> tuple[
    float | None, float | None, float | None, float | None, str | None
]:
    """(rho, p_rho, r, p_r, note) for NaN-free x, y; ``None`` where undefined."""
    n = x.size
    if n < 3:
        return None, None, None, None, f"n < 3 (n={n}): correlation undefined"
    if _is_constant(x) or _is_constant(y):
        which = "x" if _is_constant(x) else "y"
        return None, None, None, None, f"constant input ({which}): correlation undefined"
    rho, p_rho = stats.spearmanr(x, y)
    r, p_r = stats.pearsonr(x, y)
    return (_json_float(rho), _json_float(p_rho), _json_float(r), _json_float(p_r), None)


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of each row of ``a`` with the same row of ``b``; NaN for constant rows."""
    ac = a - a.mean(axis=1, keepdims=True)
    bc = b - b.mean(axis=1, keepdims=True)
    num = np.einsum("ij,ij->i", ac, bc)
    den = np.sqrt(np.einsum("ij,ij->i", ac, ac) * np.einsum("ij,ij->i", bc, bc))
    # Test constancy exactly (max == min): a float mean of identical values can be off by one ulp,
    # leaving a tiny non-zero denominator and a meaningless r.
    constant = (np.ptp(a, axis=1) == 0) | (np.ptp(b, axis=1) == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = num / den
    r[constant] = np.nan
    return np.clip(r, -1.0, 1.0)


def _rowwise_weighted_pearson(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted Pearson per row (weights = how often each row was drawn); NaN if constant."""
    sw = w.sum(axis=1, keepdims=True)
    ma = (w * a).sum(axis=1, keepdims=True) / sw
    mb = (w * b).sum(axis=1, keepdims=True) / sw
    ac, bc = a - ma, b - mb
    num = (w * ac * bc).sum(axis=1)
    den = np.sqrt((w * ac * ac).sum(axis=1) * (w * bc * bc).sum(axis=1))
    drawn = w > 0
    constant = np.zeros(a.shape[0], dtype=bool)
    for arr in (a, b):
        hi = np.where(drawn, arr, -np.inf).max(axis=1)
        lo = np.where(drawn, arr, np.inf).min(axis=1)
        constant |= hi == lo
    with np.errstate(invalid="ignore", divide="ignore"):
        r = num / den
    r[constant] = np.nan
    return np.clip(r, -1.0, 1.0)


def _weighted_midranks(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mid-ranks of ``values`` in the sample where row i appears ``weights[b, i]`` times.

    Equal to ``rankdata(np.repeat(values, weights[b]))`` mapped back to the original rows, but
    without materialising the ragged expanded samples of a cluster bootstrap (clusters of
    different size give resamples of different length).
    """
    order = np.argsort(values, kind="stable")
    sorted_vals = values[order]
    new_group = np.r_[True, sorted_vals[1:] != sorted_vals[:-1]]
    starts = np.flatnonzero(new_group)
    group_sorted = np.cumsum(new_group) - 1
    group_of_row = np.empty(values.size, dtype=np.int64)
    group_of_row[order] = group_sorted
    group_w = np.add.reduceat(weights[:, order], starts, axis=1)
    before = np.cumsum(group_w, axis=1) - group_w
    midrank = before + (group_w + 1.0) / 2.0
    return midrank[:, group_of_row]


def _percentile_ci(samples: np.ndarray) -> tuple[float, float] | None:
    valid = samples[np.isfinite(samples)]
    if valid.size < 2:
        return None
    lo, hi = np.percentile(valid, [2.5, 97.5])
    return float(lo), float(hi)


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
            raise InputError(
                f"clusters has {len(cl)} labels but x and y have {xa.size} values"
            )
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
            boot_rho = _rowwise_pearson(
                stats.rankdata(bx, axis=1), stats.rankdata(by, axis=1)
            )
        else:
            codes, uniques = pd.factorize(labels)
            n_clusters = int(len(uniques))
            if n_clusters < 2:
                boot_r = boot_rho = np.full(n_boot, np.nan)
                notes.append("fewer than 2 clusters: cluster bootstrap undefined")
            else:
                draws = rng.integers(0, n_clusters, size=(n_boot, n_clusters))
                offsets = (np.arange(n_boot) * n_clusters)[:, None]
                counts = np.bincount(
                    (draws + offsets).ravel(), minlength=n_boot * n_clusters
                ).reshape(n_boot, n_clusters)
                # A cluster drawn k times contributes each of its pairs k times.
                w = counts[:, codes].astype(float)
                tiled_x = np.broadcast_to(xa, w.shape)
                tiled_y = np.broadcast_to(ya, w.shape)
                boot_r = _rowwise_weighted_pearson(tiled_x, tiled_y, w)
                boot_rho = _rowwise_weighted_pearson(
                    _weighted_midranks(xa, w), _weighted_midranks(ya, w), w
                )
                if n_clusters < FEW_CLUSTERS:
                    notes.append(
                        f"only {n_clusters} clusters: the cluster-bootstrap CI is coarse"
                    )
        degenerate = int(np.isnan(boot_rho).sum())
        if 0 < degenerate < n_boot:
            notes.append(
                f"{degenerate} of {n_boot} resamples were constant and were skipped"
            )
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


# Re-exported: the comparison and group statistics live in their own modules.
from persona_assets.stats.dependent_correlations import MRR, STEIGER, dependent_correlation_test, partial_correlation  # noqa: E402
from persona_assets.stats.grouped_correlations import between_within_decomposition, sign_agreement, within_group_correlations  # noqa: E402

__all__ = [
    "Correlation", "correlate", "MRR", "STEIGER", "dependent_correlation_test", "partial_correlation",
    "within_group_correlations", "between_within_decomposition", "sign_agreement",
]
