"""Comparing correlations measured on the same cases: Steiger (1980) / Meng, Rosenthal & Rubin (1992), and partial
correlation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from persona_assets.runs.errors import InputError
from persona_assets.stats.helpers import ArrayLike, paired


MRR = "meng-rosenthal-rubin-1992"
STEIGER = "steiger-1980"


def dependent_correlation_test(r_xy: float, r_xz: float, r_yz: float, n: int, *, method: str = MRR) -> dict[str, Any]:
    """Test H0: corr(x, y) == corr(x, z) when both are measured on the same n cases.

    Here x = leakage, y = JS divergence, z = cosine similarity. The two correlations share x and
    are themselves correlated through r_yz, so comparing them as if independent would be wrong.

    ``method`` is ``"meng-rosenthal-rubin-1992"`` (default) or ``"steiger-1980"`` (Steiger's Z1*,
    pooled-r covariance of the Fisher z's). Both compare *signed* correlations: divergence falls
    where similarity rises, so to ask which predictor is stronger pass the correlation of a
    similarity (e.g. ``-r`` for JS, and flip the sign of r_yz with it). With Spearman
    coefficients the test is the usual large-sample approximation.
    Returns ``{"z", "p_two_sided", "method", "n"}``; z > 0 means r_xy > r_xz.
    """
    for name, value in (("r_xy", r_xy), ("r_xz", r_xz), ("r_yz", r_yz)):
        if not (isinstance(value, (int, float, np.floating)) and math.isfinite(value)):
            raise InputError(f"{name} must be a finite number, got {value!r}")
        if not -1.0 <= value <= 1.0:
            raise InputError(f"{name} = {value} lies outside [-1, 1]")
    for name, value in (("r_xy", r_xy), ("r_xz", r_xz)):
        if abs(value) == 1.0:
            raise InputError(f"{name} = {value}: Fisher z is infinite, test undefined")
    if abs(r_yz) == 1.0:
        raise InputError("r_yz = ±1: y and z are the same variable, test undefined")
    if int(n) != n or n <= 3:
        raise InputError(f"n must be an integer > 3, got {n}")
    det = 1 - r_xy**2 - r_xz**2 - r_yz**2 + 2 * r_xy * r_xz * r_yz
    if det < -1e-12:
        raise InputError(
            f"r_xy={r_xy}, r_xz={r_xz}, r_yz={r_yz} cannot all hold at once "
            "(the 3x3 correlation matrix is not positive semi-definite)"
        )

    z_xy, z_xz = math.atanh(r_xy), math.atanh(r_xz)
    if method == MRR:
        r2_bar = (r_xy**2 + r_xz**2) / 2
        f = min((1 - r_yz) / (2 * (1 - r2_bar)), 1.0)  # MRR cap f at 1
        h = (1 - f * r2_bar) / (1 - r2_bar)
        z = (z_xy - z_xz) * math.sqrt((n - 3) / (2 * (1 - r_yz) * h))
    elif method == STEIGER:
        r_bar = (r_xy + r_xz) / 2
        psi = r_yz * (1 - 2 * r_bar**2) - 0.5 * r_bar**2 * (1 - 2 * r_bar**2 - r_yz**2)
        c = psi / (1 - r_bar**2) ** 2
        z = (z_xy - z_xz) * math.sqrt(n - 3) / math.sqrt(2 - 2 * c)
    else:
        raise InputError(f"method must be {MRR!r} or {STEIGER!r}, got {method!r}")
    p = 2 * stats.norm.sf(abs(z))
    return {"z": float(z), "p_two_sided": float(p), "method": method, "n": int(n)}


def _residualise(target: np.ndarray, design: np.ndarray) -> np.ndarray:
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    return target - design @ coef


def partial_correlation(
    x: ArrayLike,
    y: ArrayLike,
    z_covariates: ArrayLike | Sequence[ArrayLike],
    method: str = "spearman",
) -> dict[str, Any]:
    """Correlation of x and y after regressing the covariate(s) out of both.

    ``z_covariates`` is one covariate (1-D, length n) or several (2-D, n rows x k columns).
    For ``"spearman"`` x, y and every covariate are ranked first and the ranks residualised, so
    with one covariate the result equals (ρ_xy − ρ_xz ρ_yz) / sqrt((1 − ρ_xz²)(1 − ρ_yz²)).
    Rows with a NaN anywhere are dropped. The p-value is the t-test with n − 2 − k degrees of
    freedom. Returns ``{"r", "p", "n", "method", "n_covariates", "note"}``.
    """
    if method not in ("spearman", "pearson"):
        raise InputError(f"method must be 'spearman' or 'pearson', got {method!r}")
    xa, ya, keep = paired(x, y)
    try:
        za = np.asarray(z_covariates, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"z_covariates: values must be numbers ({exc})") from exc
    if za.ndim == 1:
        za = za[:, None]
    if za.ndim != 2 or za.shape[0] != xa.size:
        raise InputError(f"z_covariates must have {xa.size} rows (one per x value), got shape {za.shape}")
    if np.isinf(za).any():
        raise InputError("z_covariates: contains infinite values")
    keep &= ~np.isnan(za).any(axis=1)
    xa, ya, za = xa[keep], ya[keep], za[keep]
    n, k = int(xa.size), int(za.shape[1])
    result: dict[str, Any] = {
        "r": None,
        "p": None,
        "n": n,
        "method": method,
        "n_covariates": k,
        "note": None,
    }
    df = n - 2 - k
    if df < 1:
        result["note"] = f"n={n} with {k} covariate(s) leaves no degrees of freedom"
        return result
    if method == "spearman":
        xa, ya = stats.rankdata(xa), stats.rankdata(ya)
        za = stats.rankdata(za, axis=0)
    design = np.column_stack([np.ones(n), za])
    rx, ry = _residualise(xa, design), _residualise(ya, design)
    # Residuals of an exactly-explained variable are ~1e-16 noise, not signal.
    scale_x = max(np.abs(xa).max(), 1.0)
    scale_y = max(np.abs(ya).max(), 1.0)
    if np.abs(rx).max() <= 1e-10 * scale_x or np.abs(ry).max() <= 1e-10 * scale_y:
        result["note"] = "x or y is fully explained by the covariates: partial correlation undefined"
        return result
    r = float(np.clip(np.corrcoef(rx, ry)[0, 1], -1.0, 1.0))
    if abs(r) == 1.0:
        p = 0.0
    else:
        t = r * math.sqrt(df / (1 - r**2))
        p = float(2 * stats.t.sf(abs(t), df))
    result.update(r=r, p=p)
    return result
