"""Shared helpers of the statistics modules: input checks, point estimates, row-wise correlations, CIs.

Public so that `correlate`, `dependent_correlations`, `grouped_correlations`, `permutation_tests` and
`question_bootstrap` use one implementation without importing each other's private names.
Plain numpy/scipy; no dagster import.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from persona_assets.runs.errors import InputError

ArrayLike = Sequence[float] | np.ndarray | pd.Series


def json_float(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def as_1d_float(values: ArrayLike, name: str) -> np.ndarray:
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


def paired(x: ArrayLike, y: ArrayLike, names: tuple[str, str] = ("x", "y")):
    xa = as_1d_float(x, names[0])
    ya = as_1d_float(y, names[1])
    if xa.shape != ya.shape:
        raise InputError(f"{names[0]} and {names[1]} differ in length ({xa.size} vs {ya.size})")
    keep = ~(np.isnan(xa) | np.isnan(ya))
    return xa, ya, keep


def paired_with_groups(x: ArrayLike, y: ArrayLike, groups: Sequence | pd.Series):
    """`paired` plus one group label per value (as a numpy array); missing labels are an error."""
    xa, ya, keep = paired(x, y)
    g = pd.Series(list(groups) if not isinstance(groups, pd.Series) else groups)
    if len(g) != xa.size:
        raise InputError(f"groups has {len(g)} labels but x and y have {xa.size} values")
    if g.isna().any():
        raise InputError("groups: contains missing labels")
    return xa, ya, g.to_numpy(), keep


def is_constant(a: np.ndarray) -> bool:
    return a.size == 0 or bool(np.all(a == a[0]))


def point_estimates(
    x: np.ndarray, y: np.ndarray
) -> tuple[float | None, float | None, float | None, float | None, str | None]:
    """(rho, p_rho, r, p_r, note) for NaN-free x, y; ``None`` where undefined."""
    n = x.size
    if n < 3:
        return None, None, None, None, f"n < 3 (n={n}): correlation undefined"
    if is_constant(x) or is_constant(y):
        which = "x" if is_constant(x) else "y"
        return None, None, None, None, f"constant input ({which}): correlation undefined"
    rho, p_rho = stats.spearmanr(x, y)
    r, p_r = stats.pearsonr(x, y)
    return (json_float(rho), json_float(p_rho), json_float(r), json_float(p_r), None)


def rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
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


def rowwise_weighted_pearson(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
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


def weighted_midranks(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
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


def percentile_ci(samples: np.ndarray) -> tuple[float, float] | None:
    valid = samples[np.isfinite(samples)]
    if valid.size < 2:
        return None
    lo, hi = np.percentile(valid, [2.5, 97.5])
    return float(lo), float(hi)
