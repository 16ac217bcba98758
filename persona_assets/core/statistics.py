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

from persona_assets.core.errors import InputError

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


MRR = "meng-rosenthal-rubin-1992"
STEIGER = "steiger-1980"


def dependent_correlation_test(
    r_xy: float, r_xz: float, r_yz: float, n: int, *, method: str = MRR
) -> dict[str, Any]:
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
    xa, ya, keep = _paired(x, y)
    try:
        za = np.asarray(z_covariates, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"z_covariates: values must be numbers ({exc})") from exc
    if za.ndim == 1:
        za = za[:, None]
    if za.ndim != 2 or za.shape[0] != xa.size:
        raise InputError(
            f"z_covariates must have {xa.size} rows (one per x value), got shape {za.shape}"
        )
    if np.isinf(za).any():
        raise InputError("z_covariates: contains infinite values")
    keep &= ~np.isnan(za).any(axis=1)
    xa, ya, za = xa[keep], ya[keep], za[keep]
    n, k = int(xa.size), int(za.shape[1])
    result: dict[str, Any] = {
        "r": None, "p": None, "n": n, "method": method, "n_covariates": k, "note": None,
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
        result["note"] = (
            "x or y is fully explained by the covariates: partial correlation undefined"
        )
        return result
    r = float(np.clip(np.corrcoef(rx, ry)[0, 1], -1.0, 1.0))
    if abs(r) == 1.0:
        p = 0.0
    else:
        t = r * math.sqrt(df / (1 - r**2))
        p = float(2 * stats.t.sf(abs(t), df))
    result.update(r=r, p=p)
    return result


def within_group_correlations(
    x: ArrayLike, y: ArrayLike, groups: Sequence[Any] | np.ndarray | pd.Series
) -> dict[str, Any]:
    """Per-group correlations plus a pooled / within-group / between-group decomposition.

    A pooled correlation over pairs from several source personas mixes two questions: within one
    source, do closer targets leak more (within-group), and do sources whose targets are closer
    on average also leak more on average (between-group, the correlation of group means)? This
    returns both, with a note in plain words. Pairs with a NaN are dropped first.
    """
    xa, ya, g, keep = _paired_with_groups(x, y, groups)
    frame = pd.DataFrame({"x": xa, "y": ya, "g": g})[keep]

    per_group: dict[str, dict[str, Any]] = {}
    for label, sub in frame.groupby("g", sort=False):
        rho, p_rho, r, p_r, note = _point_estimates(sub["x"].to_numpy(), sub["y"].to_numpy())
        per_group[str(label)] = {
            "n": int(len(sub)), "spearman_rho": rho, "spearman_p": p_rho,
            "pearson_r": r, "pearson_p": p_r, "note": note,
        }

    pooled_rho, _, pooled_r, _, pooled_note = _point_estimates(
        frame["x"].to_numpy(), frame["y"].to_numpy()
    )
    within_rho = [v["spearman_rho"] for v in per_group.values() if v["spearman_rho"] is not None]
    within_r = [v["pearson_r"] for v in per_group.values() if v["pearson_r"] is not None]
    means = frame.groupby("g", sort=False)[["x", "y"]].mean()
    between_rho, _, between_r, _, between_note = _point_estimates(
        means["x"].to_numpy(), means["y"].to_numpy()
    )
    mean_within_rho = float(np.mean(within_rho)) if within_rho else None
    mean_within_r = float(np.mean(within_r)) if within_r else None

    def fmt(value: float | None) -> str:
        return "undefined" if value is None else f"{value:+.3f}"

    note = (
        f"Pooled Spearman {fmt(pooled_rho)} over {len(frame)} pairs mixes two effects. "
        f"Within a group, the mean Spearman is {fmt(mean_within_rho)} "
        f"({len(within_rho)} of {len(per_group)} groups defined): how well x orders y "
        f"inside one group. Between groups, the Spearman of the {len(means)} group means is "
        f"{fmt(between_rho)}"
        + (f" ({between_note})" if between_note else "")
        + ": whether groups with higher average x also have higher average y. "
        "If the pooled value clearly exceeds the within-group mean, group differences "
        "drive it rather than ordering within each group."
    )
    if pooled_note:
        note += f" Pooled: {pooled_note}."
    return {
        "n": int(len(frame)),
        "n_groups": int(len(per_group)),
        "per_group": per_group,
        "pooled_spearman": pooled_rho,
        "pooled_pearson": pooled_r,
        "mean_within_spearman": mean_within_rho,
        "mean_within_pearson": mean_within_r,
        "n_groups_defined": len(within_rho),
        "between_group_spearman": between_rho,
        "between_group_pearson": between_r,
        "n_dropped_nan": int((~keep).sum()),
        "note": note,
    }


def between_within_decomposition(
    x: ArrayLike, y: ArrayLike, groups: Sequence[Any] | np.ndarray | pd.Series, method: str = "spearman"
) -> dict[str, Any]:
    """Split a pooled correlation exactly into a within-group and a between-group part.

    With group means x̄_g, ȳ_g and grand means x̄, ȳ, the pooled covariance is the sum
    cov = (1/n) Σ (x − x̄_g)(y − ȳ_g)  [within]  +  (1/n) Σ (x̄_g − x̄)(ȳ_g − ȳ)  [between],
    so the pooled r = within_part + between_part (each divided by sqrt(var_x var_y)).
    ``between_share`` = between_part / pooled r says how much of the pooled correlation is only
    separation between groups (e.g. source personas that leak more overall and sit closer overall).
    ``within_r`` is the correlation of the group-demeaned values (the within-group association).
    For ``"spearman"`` x and y are ranked over the pooled sample first, so ``pooled_r`` equals
    scipy's Spearman ρ. Pairs with a NaN are dropped.
    """
    if method not in ("spearman", "pearson"):
        raise InputError(f"method must be 'spearman' or 'pearson', got {method!r}")
    xa, ya, labels, keep = _paired_with_groups(x, y, groups)
    xa, ya, labels = xa[keep], ya[keep], labels[keep]
    n = int(xa.size)
    result: dict[str, Any] = {
        "method": method, "n": n, "n_groups": int(len(pd.unique(labels))), "pooled_r": None,
        "within_part": None, "between_part": None, "between_share": None, "within_r": None, "note": None,
    }
    if n < 3 or _is_constant(xa) or _is_constant(ya):
        result["note"] = "n < 3 or constant input: decomposition undefined"
        return result
    if method == "spearman":
        xa, ya = stats.rankdata(xa), stats.rankdata(ya)
    frame = pd.DataFrame({"x": xa, "y": ya, "g": labels})
    means = frame.groupby("g")[["x", "y"]].transform("mean")
    dx, dy = xa - xa.mean(), ya - ya.mean()
    wx, wy = xa - means["x"].to_numpy(), ya - means["y"].to_numpy()
    bx, by = means["x"].to_numpy() - xa.mean(), means["y"].to_numpy() - ya.mean()
    scale = math.sqrt(float(np.mean(dx * dx)) * float(np.mean(dy * dy)))
    pooled = float(np.mean(dx * dy)) / scale
    within_part = float(np.mean(wx * wy)) / scale
    between_part = float(np.mean(bx * by)) / scale
    within_scale = math.sqrt(float(np.mean(wx * wx)) * float(np.mean(wy * wy)))
    result.update(
        pooled_r=pooled,
        within_part=within_part,
        between_part=between_part,
        between_share=between_part / pooled if abs(pooled) > 1e-12 else None,
        within_r=float(np.mean(wx * wy)) / within_scale if within_scale > 0 else None,
        note=(
            "pooled_r = within_part + between_part exactly; between_share is the fraction of the "
            "pooled correlation due to differences between group means"
            + (" (ranks over the pooled sample)" if method == "spearman" else "")
        ),
    )
    return result


def sign_agreement(a: ArrayLike, b: ArrayLike) -> dict[str, Any]:
    """How often two signed differences point the same way, with a two-sided binomial test (p=1/2).

    Pairs where either value is exactly 0 or NaN carry no direction and are left out. Unlike a
    correlation of signed differences, this does not depend on which member of a pair is "first".
    """
    xa, ya, keep = _paired(a, b, ("a", "b"))
    xa, ya = xa[keep], ya[keep]
    directed = (xa != 0) & (ya != 0)
    n = int(directed.sum())
    agree = int((np.sign(xa[directed]) == np.sign(ya[directed])).sum())
    if n == 0:
        return {"n": 0, "n_agree": 0, "share_agree": None, "binomial_p": None, "note": "no pair with both signs defined"}
    p = float(stats.binomtest(agree, n, 0.5).pvalue)
    return {"n": n, "n_agree": agree, "share_agree": agree / n, "binomial_p": p, "note": None}
