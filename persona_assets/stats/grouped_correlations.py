"""Correlations within groups (e.g. leakage source personas): per group, pooled = within + between, and sign
agreement."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from persona_assets.runs.errors import InputError
from persona_assets.stats.helpers import ArrayLike, is_constant, paired, paired_with_groups, point_estimates


def within_group_correlations(
    x: ArrayLike, y: ArrayLike, groups: Sequence[Any] | np.ndarray | pd.Series
) -> dict[str, Any]:
    """Per-group correlations plus a pooled / within-group / between-group decomposition.

    A pooled correlation over pairs from several source personas mixes two questions: within one
    source, do closer targets leak more (within-group), and do sources whose targets are closer
    on average also leak more on average (between-group, the correlation of group means)? This
    returns both, with a note in plain words. Pairs with a NaN are dropped first.
    """
    xa, ya, g, keep = paired_with_groups(x, y, groups)
    frame = pd.DataFrame({"x": xa, "y": ya, "g": g})[keep]

    per_group: dict[str, dict[str, Any]] = {}
    for label, sub in frame.groupby("g", sort=False):
        rho, p_rho, r, p_r, note = point_estimates(sub["x"].to_numpy(), sub["y"].to_numpy())
        per_group[str(label)] = {
            "n": int(len(sub)),
            "spearman_rho": rho,
            "spearman_p": p_rho,
            "pearson_r": r,
            "pearson_p": p_r,
            "note": note,
        }

    pooled_rho, _, pooled_r, _, pooled_note = point_estimates(frame["x"].to_numpy(), frame["y"].to_numpy())
    within_rho = [v["spearman_rho"] for v in per_group.values() if v["spearman_rho"] is not None]
    within_r = [v["pearson_r"] for v in per_group.values() if v["pearson_r"] is not None]
    means = frame.groupby("g", sort=False)[["x", "y"]].mean()
    between_rho, _, between_r, _, between_note = point_estimates(means["x"].to_numpy(), means["y"].to_numpy())
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
    xa, ya, labels, keep = paired_with_groups(x, y, groups)
    xa, ya, labels = xa[keep], ya[keep], labels[keep]
    n = int(xa.size)
    result: dict[str, Any] = {
        "method": method,
        "n": n,
        "n_groups": int(len(pd.unique(labels))),
        "pooled_r": None,
        "within_part": None,
        "between_part": None,
        "between_share": None,
        "within_r": None,
        "note": None,
    }
    if n < 3 or is_constant(xa) or is_constant(ya):
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
    xa, ya, keep = paired(a, b, ("a", "b"))
    xa, ya = xa[keep], ya[keep]
    directed = (xa != 0) & (ya != 0)
    n = int(directed.sum())
    agree = int((np.sign(xa[directed]) == np.sign(ya[directed])).sum())
    if n == 0:
        return {
            "n": 0,
            "n_agree": 0,
            "share_agree": None,
            "binomial_p": None,
            "note": "no pair with both signs defined",
        }
    p = float(stats.binomtest(agree, n, 0.5).pvalue)
    return {"n": n, "n_agree": agree, "share_agree": agree / n, "binomial_p": p, "note": None}
