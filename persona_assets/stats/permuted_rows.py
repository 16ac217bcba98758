"""Spearman and Pearson of many permuted copies of one vector against a fixed one, for the permutation tests.

A permutation test ranks each permuted row. When a row only rearranges the measured values (the usual case:
persona labels permuted within role strata map the measured pairs onto themselves), its ranks are the
measured values' ranks rearranged the same way, so one gather replaces a sort per row: the same floats
(average ranks are equivariant under rearrangement), about ten times faster. No dagster import.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from persona_assets.stats.helpers import rowwise_pearson


def rearranged_ranks(matrix: np.ndarray, s: np.ndarray, t: np.ndarray, perms: np.ndarray) -> np.ndarray | None:
    """``stats.rankdata(matrix[perms[:, s], perms[:, t]], axis=1)`` when every row rearranges ``matrix[s, t]``;
    None when some row reaches a pair outside (s, t) (then rank the rows themselves)."""
    ranked = np.full(matrix.shape, np.nan)
    ranked[s, t] = stats.rankdata(matrix[s, t])
    rows = ranked[perms[:, s], perms[:, t]]
    return rows if np.isfinite(rows).all() else None


def row_statistics(
    permuted: np.ndarray,
    fixed: np.ndarray,
    *,
    permuted_ranks: np.ndarray | None = None,
    fixed_ranks: np.ndarray | None = None,
    pearson: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Spearman (and Pearson unless ``pearson`` is False) of each row of ``permuted`` with ``fixed``; rows with NaN
    use their finite part. ``permuted_ranks``: the rows' ranks when known (`rearranged_ranks`); ``fixed_ranks``:
    ``stats.rankdata(fixed)`` when known."""
    finite = np.isfinite(permuted)
    if finite.all():
        ranks = stats.rankdata(permuted, axis=1) if permuted_ranks is None else permuted_ranks
        fixed_ranks = stats.rankdata(fixed) if fixed_ranks is None else fixed_ranks
        rho = rowwise_pearson(ranks, np.broadcast_to(fixed_ranks, permuted.shape))
        r = rowwise_pearson(permuted, np.broadcast_to(fixed, permuted.shape)) if pearson else None
        return rho, r
    rho = np.full(permuted.shape[0], np.nan)
    r = np.full(permuted.shape[0], np.nan)
    for k in range(permuted.shape[0]):
        keep = finite[k]
        if keep.sum() >= 3:
            a, b = permuted[k, keep][None, :], fixed[keep][None, :]
            rho[k] = rowwise_pearson(stats.rankdata(a, axis=1), stats.rankdata(b, axis=1))[0]
            if pearson:
                r[k] = rowwise_pearson(a, b)[0]
    return rho, (r if pearson else None)


def permuted_spearmans(
    values: np.ndarray,
    ranks: np.ndarray | None,
    a: np.ndarray,
    b: np.ndarray,
    fixed_ranks: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Spearman ρ of each row of ``values`` (permuted leakage, the observed row first; ``ranks`` its rows' ranks when
    known) with ``a`` and with ``b``; ``fixed_ranks``: the ranks of ``a`` and ``b`` when known (a simulation reuses
    them). None where their difference is undefined: fewer than 4 pairs, or ``a``, ``b`` or the observed row
    constant."""
    if values.shape[1] < 4 or np.ptp(a) == 0 or np.ptp(b) == 0 or np.ptp(values[0]) == 0:
        return None
    if ranks is None and np.isfinite(values).all():
        ranks = stats.rankdata(values, axis=1)  # shared by both predictors
    ranks_a, ranks_b = fixed_ranks or (None, None)
    rho_a, _ = row_statistics(values, a, permuted_ranks=ranks, fixed_ranks=ranks_a, pearson=False)
    rho_b, _ = row_statistics(values, b, permuted_ranks=ranks, fixed_ranks=ranks_b, pearson=False)
    return rho_a, rho_b
