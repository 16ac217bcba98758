"""Tests that respect which personas a pair value belongs to.

Pair values are not independent observations: a persona with a large effect moves every pair it
is part of, and directed leakage pairs are a crossed design (sources × targets). Resampling pairs
as if independent then gives p-values and CIs that are far too optimistic. Here:

- `mantel_test`: matrix vs matrix (e.g. JS vs cosine over unordered pairs). The persona labels of
  one matrix are permuted (rows and columns together), which keeps every persona-level dependence
  of both matrices and breaks only their alignment.
- `leakage_permutation_test` / `difference_permutation_test`: a predictor matrix (or two) vs the
  directed leakage matrix. The persona labels of the leakage matrix are permuted within strata of
  personas that play the same roles (source and/or target), so the set of measured directed pairs
  stays the same; its source and target effects travel with the labels.
- `crossed_bootstrap`: CIs for the directed pairs that resample personas (the pigeonhole / two-way
  cluster bootstrap, one draw per persona shared by its source and target roles): a pair (s, t)
  enters a resample as often as s was drawn times as often as t was drawn.

Every result names its resampling unit, the number of resamples, whether the permutations were
enumerated exactly, and its seed. p-values of random permutations are (1 + #{|T*| ≥ |T|}) / (1 + B),
so they are never 0. No dagster import.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from persona_assets.runs.errors import InputError
from persona_assets.stats.helpers import json_float as _json_float
from persona_assets.stats.helpers import percentile_ci as _percentile_ci
from persona_assets.stats.helpers import rowwise_weighted_pearson as _rowwise_weighted_pearson
from persona_assets.stats.helpers import weighted_midranks as _weighted_midranks
from persona_assets.stats.permuted_rows import permuted_spearmans, rearranged_ranks, row_statistics
from persona_assets.constants import DEFAULT_N_PERMUTATIONS  # noqa: F401  (its default; defined once)

# Relative tolerance when counting permuted statistics at least as extreme as the observed one:
# an identical arrangement must count, whatever the rounding of the sums.
TIE_TOL = 1e-12
MANTEL_UNIT = "persona labels (rows and columns of one matrix permuted together)"
LEAKAGE_UNIT = "persona labels of the leakage matrix, permuted within personas of the same role (source/target)"
CROSSED_UNIT = (
    "personas resampled within their role strata, one draw per persona for its source and target roles "
    "(two-way cluster bootstrap)"
)
# What benchmarks/calibration.py found (2,000 simulations per scenario), stated next to the results.
DIFFERENCE_CALIBRATION = (
    "holds 5% when neither predictor relates to leakage; conservative when both do equally (the permutation null "
    "has ρ = 0 for both: 1.6% rejections at ρ ≈ 0.45 in benchmarks/calibration.py), so a small p is strong evidence "
    "and a large one is weak evidence of no difference"
)
CROSSED_CALIBRATION = (
    "liberal under dual-role persona effects (a persona leaking much and receiving much): its 95% CI excluded 0 in "
    "about 10% of such null simulations (16% before a persona's two roles shared one draw), 1–2% with independent "
    "source and target effects (benchmarks/calibration.py); test with the permutation p, never read this CI as a test"
)


def _square(matrix: np.ndarray | Sequence, name: str) -> np.ndarray:
    arr = np.asarray(matrix, dtype=float)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise InputError(f"{name}: expected a square matrix, got shape {arr.shape}")
    if np.isinf(arr).any():
        raise InputError(f"{name}: contains infinite values")
    return arr


def persona_permutations(strata: Sequence[Any], n_perm: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """Permutations of range(n) that map every index into its own stratum; the identity first.

    Enumerates all of them when there are at most ``n_perm`` (exact test), else draws ``n_perm``
    at random (plus the identity). Returns (array [k, n], exact).
    """
    labels = list(strata)
    groups = [np.flatnonzero([label == value for label in labels]) for value in dict.fromkeys(labels)]
    n = len(labels)
    total = math.prod(math.factorial(len(g)) for g in groups)
    identity = np.arange(n)
    if total <= n_perm:
        perms = []
        for choice in itertools.product(*(itertools.permutations(g) for g in groups)):
            perm = identity.copy()
            for g, image in zip(groups, choice):
                perm[g] = image
            perms.append(perm)
        # itertools yields the identity first (every group's first permutation is itself).
        return np.array(perms), True
    perms = np.tile(identity, (n_perm + 1, 1))
    for g in groups:
        if len(g) > 1:
            perms[1:, g] = rng.permuted(np.tile(g, (n_perm, 1)), axis=1)
    return perms, False


def permutation_p_value(null: np.ndarray, exact: bool) -> float | None:
    """Two-sided p from statistics whose first entry is the observed one (identity permutation)."""
    valid = null[np.isfinite(null)]
    if not np.isfinite(null[0]) or valid.size < 2:
        return None
    observed = abs(null[0])
    extreme = int((np.abs(valid) >= observed * (1 - TIE_TOL) - TIE_TOL).sum())  # includes the identity
    # Exact: the identity is one of the enumerated permutations. Random: the identity plays the
    # role of the "+1" of (1 + count) / (1 + B).
    return extreme / valid.size


def _result(
    rho: np.ndarray, r: np.ndarray, *, n: int, exact: bool, n_perm: int, seed: int, unit: str, **extra: Any
) -> dict[str, Any]:
    return {
        "n": n,
        "spearman_rho": _json_float(rho[0]),
        "spearman_p": permutation_p_value(rho, exact),
        "pearson_r": _json_float(r[0]),
        "pearson_p": permutation_p_value(r, exact),
        "resampling_unit": unit,
        "n_permutations": int(rho.size - (0 if exact else 1)),
        "exact": bool(exact),
        "seed": int(seed),
        **extra,
    }


def mantel_test(x: np.ndarray, y: np.ndarray, *, n_perm: int, seed: int) -> dict[str, Any]:
    """Mantel permutation test of Spearman and Pearson between two symmetric N×N matrices.

    Uses the unordered pairs i < j where both are finite. The permuted matrix is one that is
    finite everywhere off the diagonal (x if it is, else y), so every permutation compares the
    same set of pairs; when neither is, x is permuted and each permutation uses the pairs it
    leaves finite (noted)."""
    xa, ya = _square(x, "x"), _square(y, "y")
    if xa.shape != ya.shape:
        raise InputError(f"x and y differ in shape ({xa.shape} vs {ya.shape})")
    if n_perm < 1:
        raise InputError(f"n_perm must be >= 1, got {n_perm}")
    n_personas = xa.shape[0]
    i, j = np.triu_indices(n_personas, k=1)
    off = ~np.eye(n_personas, dtype=bool)
    complete = [name for name, m in (("x", xa), ("y", ya)) if np.isfinite(m[off]).all()]
    which = complete[0] if complete else "x"
    permuted, fixed = (xa, ya) if which == "x" else (ya, xa)
    keep = np.isfinite(xa[i, j]) & np.isfinite(ya[i, j])
    i, j = i[keep], j[keep]
    note = None if complete else "both matrices have missing entries: each permutation uses the pairs it leaves finite"
    if i.size < 3 or np.ptp(xa[i, j]) == 0 or np.ptp(ya[i, j]) == 0:
        return {
            "n": int(i.size),
            "spearman_rho": None,
            "spearman_p": None,
            "pearson_r": None,
            "pearson_p": None,
            "resampling_unit": MANTEL_UNIT,
            "n_permutations": 0,
            "exact": False,
            "seed": int(seed),
            "permuted_matrix": which,
            "note": "fewer than 3 pairs or a constant matrix: test undefined",
        }
    perms, exact = persona_permutations([0] * n_personas, n_perm, np.random.default_rng(seed))
    values = permuted[perms[:, i], perms[:, j]]
    rho, r = row_statistics(values, fixed[i, j])
    return _result(
        rho,
        r,
        n=int(i.size),
        exact=exact,
        n_perm=n_perm,
        seed=seed,
        unit=MANTEL_UNIT,
        n_personas=int(n_personas),
        permuted_matrix=which,
        note=note,
    )


def leakage_roles(leakage: np.ndarray) -> list[str]:
    """The stratum of each persona: whether it has measured leakage as a source and as a target."""
    measured = np.isfinite(leakage) & ~np.eye(leakage.shape[0], dtype=bool)
    return [f"source={bool(measured[k].any())},target={bool(measured[:, k].any())}" for k in range(leakage.shape[0])]


def _leakage_setup(leakage: np.ndarray, predictors: Sequence[np.ndarray], n_perm: int, seed: int):
    ya = _square(leakage, "leakage")
    preds = [_square(p, f"predictor {k}") for k, p in enumerate(predictors)]
    for p in preds:
        if p.shape != ya.shape:
            raise InputError(f"predictor and leakage differ in shape ({p.shape} vs {ya.shape})")
    if n_perm < 1:
        raise InputError(f"n_perm must be >= 1, got {n_perm}")
    observed = np.isfinite(ya) & ~np.eye(ya.shape[0], dtype=bool)
    for p in preds:
        observed &= np.isfinite(p)
    s, t = np.nonzero(observed)
    roles = leakage_roles(ya)
    perms, exact = persona_permutations(roles, n_perm, np.random.default_rng(seed))
    values = ya[perms[:, s], perms[:, t]]
    ranks = rearranged_ranks(ya, s, t, perms)
    note = None
    if not np.isfinite(values).all():
        note = (
            "the measured pairs are not a full sources × targets grid: "
            "each permutation uses the pairs it leaves measured"
        )
    return preds, s, t, values, ranks, exact, roles, note


def _strata_summary(roles: list[str]) -> dict[str, int]:
    return {role: roles.count(role) for role in dict.fromkeys(roles)}


def leakage_permutation_test(predictor: np.ndarray, leakage: np.ndarray, *, n_perm: int, seed: int) -> dict[str, Any]:
    """Spearman/Pearson of predictor[s, t] vs leakage[s, t] over the measured directed pairs, with
    permutation p-values (leakage labels permuted within role strata).

    ``leakage`` is N×N with NaN where no rate was measured (and on the diagonal).
    """
    (pred,), s, t, values, ranks, exact, roles, note = _leakage_setup(leakage, [predictor], n_perm, seed)
    if s.size < 3 or np.ptp(pred[s, t]) == 0 or np.ptp(values[0]) == 0:
        return {
            "n": int(s.size),
            "spearman_rho": None,
            "spearman_p": None,
            "pearson_r": None,
            "pearson_p": None,
            "resampling_unit": LEAKAGE_UNIT,
            "n_permutations": 0,
            "exact": False,
            "seed": int(seed),
            "note": "fewer than 3 measured pairs or constant input: test undefined",
        }
    rho, r = row_statistics(values, pred[s, t], permuted_ranks=ranks)
    return _result(
        rho,
        r,
        n=int(s.size),
        exact=exact,
        n_perm=n_perm,
        seed=seed,
        unit=LEAKAGE_UNIT,
        strata=_strata_summary(roles),
        note=note,
    )


def difference_permutation_test(
    predictor_a: np.ndarray, predictor_b: np.ndarray, leakage: np.ndarray, *, n_perm: int, seed: int
) -> dict[str, Any]:
    """Permutation test of ρ_S(a, leakage) − ρ_S(b, leakage) on the same directed pairs.

    Permuting the leakage labels (within role strata) breaks the alignment of leakage with both
    predictors at once, so the null this tests is H0: leakage is unrelated to a and to b (both ρ = 0),
    not "a and b predict leakage equally well". When both relate to leakage equally the test is
    conservative (`DIFFERENCE_CALIBRATION`); a small p still says the two differ, a large p says
    little: read it next to the test's power (`difference_power`). Pass similarities for both
    (e.g. −JS and cosine)."""
    (a, b), s, t, values, ranks, exact, roles, note = _leakage_setup(leakage, [predictor_a, predictor_b], n_perm, seed)
    out: dict[str, Any] = {
        "n": int(s.size),
        "resampling_unit": LEAKAGE_UNIT,
        "seed": int(seed),
        "coefficient": "spearman",
    }
    spearmans = permuted_spearmans(values, ranks, a[s, t], b[s, t])
    if spearmans is None:
        return out | {
            "difference": None,
            "p_two_sided": None,
            "n_permutations": 0,
            "exact": False,
            "note": "fewer than 4 measured pairs or constant input: test undefined",
        }
    rho_a, rho_b = spearmans
    diff = rho_a - rho_b
    return out | {
        "spearman_a": _json_float(rho_a[0]),
        "spearman_b": _json_float(rho_b[0]),
        "difference": _json_float(diff[0]),
        "p_two_sided": permutation_p_value(diff, exact),
        "n_permutations": int(diff.size - (0 if exact else 1)),
        "exact": bool(exact),
        "strata": _strata_summary(roles),
        "note": note,
        "calibration": DIFFERENCE_CALIBRATION,
    }


def _crossed_weights(
    sources: np.ndarray, targets: np.ndarray, n_boot: int, rng: np.random.Generator
) -> tuple[np.ndarray, int, int]:
    """Resample weights [n_boot, pairs]: a pair (s, t) enters as often as s was drawn times as often as t was drawn.

    A persona is one unit whatever its roles: it is drawn once per resample and that one count
    serves as its source count and as its target count, so the covariance between its two roles
    (a persona that leaks much and receives much) is kept. Drawing its source and target copies
    independently drops that covariance and undercovers under dual-role persona effects
    (benchmarks/calibration.py). Personas are drawn with replacement within their role stratum
    (source only, target only, both), so every resample has as many of each as the data.
    Returns (weights, number of sources, number of targets).
    """
    n = len(sources)
    codes, personas = pd.factorize(
        np.concatenate([np.asarray(sources, dtype=object), np.asarray(targets, dtype=object)])
    )
    s_codes, t_codes = codes[:n], codes[n:]
    n_p = len(personas)
    role = np.zeros(n_p, dtype=int)
    role[s_codes] |= 1
    role[t_codes] |= 2
    counts = np.zeros((n_boot, n_p))
    for stratum in np.unique(role):
        members = np.flatnonzero(role == stratum)
        k = members.size
        draws = rng.integers(0, k, size=(n_boot, k)) + (np.arange(n_boot) * k)[:, None]
        counts[:, members] = np.bincount(draws.ravel(), minlength=n_boot * k).reshape(n_boot, k)
    w = counts[:, s_codes] * counts[:, t_codes]
    return w, len(np.unique(s_codes)), len(np.unique(t_codes))


def _weighted_spearman(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return _rowwise_weighted_pearson(_weighted_midranks(x, w), _weighted_midranks(y, w), w)


def crossed_bootstrap(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    sources: Sequence[Any],
    targets: Sequence[Any],
    *,
    n_boot: int,
    seed: int,
    z: Sequence[float] | np.ndarray | None = None,
) -> dict[str, Any]:
    """Two-way (source and target) cluster-bootstrap 95% CIs of Spearman and Pearson (x, y).

    With ``z`` also the CI of the Spearman difference ρ(x, y) − ρ(z, y) on the same pairs.
    Rows with a NaN are dropped first."""
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    za = None if z is None else np.asarray(z, dtype=float)
    src, tgt = np.asarray(list(sources), dtype=object), np.asarray(list(targets), dtype=object)
    if not (xa.size == ya.size == src.size == tgt.size) or (za is not None and za.size != xa.size):
        raise InputError("x, y, (z,) sources and targets must have one entry per directed pair")
    keep = np.isfinite(xa) & np.isfinite(ya) & (np.isfinite(za) if za is not None else True)
    xa, ya, src, tgt = xa[keep], ya[keep], src[keep], tgt[keep]
    za = za[keep] if za is not None else None
    out: dict[str, Any] = {"n": int(xa.size), "resampling_unit": CROSSED_UNIT, "n_boot": int(n_boot), "seed": int(seed)}
    if xa.size < 3 or np.ptp(xa) == 0 or np.ptp(ya) == 0 or n_boot < 1:
        return out | {"spearman_ci95": None, "pearson_ci95": None, "note": "fewer than 3 pairs or constant input"}
    w, n_s, n_t = _crossed_weights(src, tgt, n_boot, np.random.default_rng(seed))
    boot_rho = _weighted_spearman(xa, ya, w)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot_r = _rowwise_weighted_pearson(np.broadcast_to(xa, w.shape), np.broadcast_to(ya, w.shape), w)
    out |= {
        "n_sources": n_s,
        "n_targets": n_t,
        "spearman_ci95": _percentile_ci(boot_rho),
        "pearson_ci95": _percentile_ci(boot_r),
    }
    if za is not None:
        diff = boot_rho - _weighted_spearman(za, ya, w)
        out["spearman_difference_ci95"] = _percentile_ci(diff)
    notes = []
    skipped = int((~np.isfinite(boot_rho)).sum())
    if skipped:
        notes.append(f"{skipped} of {n_boot} resamples were degenerate (constant) and were skipped")
    if min(n_s, n_t) < 10:
        notes.append(f"only {n_s} sources and {n_t} targets: the CI is coarse")
    out["note"] = "; ".join(notes) or None
    out["calibration"] = CROSSED_CALIBRATION
    return out


def ci_excludes(ci: Sequence[float] | None, value: float = 0.0) -> bool | None:
    """Whether a CI lies entirely on one side of ``value`` (None when there is no CI)."""
    if ci is None or None in ci:
        return None
    return bool(ci[0] > value or ci[1] < value)
