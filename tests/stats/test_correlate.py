"""Tests for persona_assets.stats.correlate: against scipy, hand-computed formulas and edge cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from persona_assets.runs.errors import InputError
from persona_assets.stats.helpers import rowwise_weighted_pearson, weighted_midranks
from persona_assets.stats.correlate import (
    MRR,
    STEIGER,
    Correlation,
    correlate,
    dependent_correlation_test,
    partial_correlation,
    within_group_correlations,
)


def _data(n: int = 120, seed: int = 0, noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return x, x + noise * rng.normal(size=n)


def _clustered(n_clusters: int = 5, size: int = 40, seed: int = 3):
    """Pairs whose correlation varies strongly between clusters, so resampling clusters matters."""
    rng = np.random.default_rng(seed)
    xs, ys, labels = [], [], []
    for c in range(n_clusters):
        x = rng.normal(size=size)
        slope = [-0.5, 0.2, 1.0, 2.0, 0.0][c % 5]
        xs.append(x + c)
        ys.append(slope * x + 0.5 * c + rng.normal(scale=0.5, size=size))
        labels += [f"source{c}"] * size
    return np.concatenate(xs), np.concatenate(ys), np.array(labels)


# --- correlate -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_point_estimates_match_scipy(seed: int) -> None:
    x, y = _data(seed=seed)
    c = correlate(x, y, n_boot=100)
    rho, p_rho = stats.spearmanr(x, y)
    r, p_r = stats.pearsonr(x, y)
    assert c.n == x.size
    assert c.spearman_rho == pytest.approx(rho, abs=1e-12)
    assert c.spearman_p == pytest.approx(p_rho, rel=1e-9)
    assert c.pearson_r == pytest.approx(r, abs=1e-12)
    assert c.pearson_p == pytest.approx(p_r, rel=1e-9)
    assert c.note is None


def test_ties_match_scipy() -> None:
    x = np.array([1, 1, 2, 2, 3, 3, 4, 5, 5, 6], dtype=float)
    y = np.array([0, 1, 1, 2, 2, 2, 3, 3, 5, 4], dtype=float)
    c = correlate(x, y, n_boot=50)
    assert c.spearman_rho == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)


@pytest.mark.parametrize("use_clusters", [False, True])
def test_ci_contains_estimate(use_clusters: bool) -> None:
    x, y, labels = _clustered()
    c = correlate(x, y, clusters=labels if use_clusters else None, n_boot=500)
    assert c.spearman_ci95 is not None and c.pearson_ci95 is not None
    assert c.spearman_ci95[0] <= c.spearman_rho <= c.spearman_ci95[1]
    assert c.pearson_ci95[0] <= c.pearson_r <= c.pearson_ci95[1]
    assert -1 <= c.spearman_ci95[0] < c.spearman_ci95[1] <= 1


def test_seeded_bootstrap_is_reproducible() -> None:
    x, y, labels = _clustered()
    for clusters in (None, labels):
        a = correlate(x, y, clusters=clusters, n_boot=300, seed=7)
        b = correlate(x, y, clusters=clusters, n_boot=300, seed=7)
        c = correlate(x, y, clusters=clusters, n_boot=300, seed=8)
        assert a == b
        assert a.spearman_ci95 != c.spearman_ci95
        assert a.seed == 7 and a.n_boot == 300


def test_cluster_bootstrap_differs_from_row_bootstrap() -> None:
    x, y, labels = _clustered()
    rows = correlate(x, y, n_boot=1000)
    clus = correlate(x, y, clusters=labels, n_boot=1000)
    assert rows.bootstrap_unit == "pair" and rows.n_clusters is None
    assert clus.bootstrap_unit == "source-cluster" and clus.n_clusters == 5
    # Same point estimates; the cluster CI is wider because whole sources move together.
    assert clus.spearman_rho == rows.spearman_rho
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(clus.spearman_ci95) > 1.5 * width(rows.spearman_ci95)
    assert width(clus.pearson_ci95) > 1.5 * width(rows.pearson_ci95)
    assert "coarse" in clus.note and "independent" in clus.note


def test_cluster_unit_label_is_configurable() -> None:
    x, y, labels = _clustered()
    c = correlate(x, y, clusters=labels, n_boot=20, cluster_unit="target-cluster")
    assert c.bootstrap_unit == "target-cluster"


def test_weighted_midranks_equal_rankdata_of_expanded_sample() -> None:
    rng = np.random.default_rng(0)
    values = rng.integers(0, 6, size=15).astype(float)  # many ties
    weights = rng.integers(0, 4, size=(30, 15)).astype(float)
    ranks = weighted_midranks(values, weights)
    for b in range(weights.shape[0]):
        w = weights[b].astype(int)
        expanded = stats.rankdata(np.repeat(values, w))
        owner = np.repeat(np.arange(values.size), w)
        for i in np.flatnonzero(w):
            assert np.all(expanded[owner == i] == ranks[b, i])


def test_cluster_resample_spearman_equals_spearman_of_expanded_sample() -> None:
    x, y, labels = _clustered(size=12)
    codes = np.unique(labels, return_inverse=True)[1]
    counts = np.array([[2, 0, 1, 1, 1], [0, 0, 3, 1, 1]], dtype=float)
    w = counts[:, codes]
    boot = rowwise_weighted_pearson(weighted_midranks(x, w), weighted_midranks(y, w), w)
    for b in range(2):
        reps = w[b].astype(int)
        expected = stats.spearmanr(np.repeat(x, reps), np.repeat(y, reps))[0]
        assert boot[b] == pytest.approx(expected, abs=1e-12)


def test_nan_pairs_are_dropped_and_counted() -> None:
    x, y = _data(n=50)
    x[[3, 10]] = np.nan
    y[20] = np.nan
    c = correlate(x, y, n_boot=50)
    keep = ~(np.isnan(x) | np.isnan(y))
    assert c.n == 47 and c.n_dropped_nan == 3
    assert c.spearman_rho == pytest.approx(stats.spearmanr(x[keep], y[keep])[0])
    assert "3 pair(s) with NaN dropped" in c.note


@pytest.mark.parametrize(
    ("x", "y", "fragment"),
    [
        ([], [], "n < 3"),
        ([1.0, 2.0], [2.0, 1.0], "n < 3"),
        ([1.0, np.nan, 2.0], [1.0, 5.0, 3.0], "n < 3"),
        ([1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0], "constant input (x)"),
        ([1.0, 2.0, 3.0, 4.0], [0.3, 0.3, 0.3, 0.3], "constant input (y)"),
    ],
)
def test_undefined_cases_give_none_and_note(x, y, fragment: str) -> None:
    c = correlate(x, y, n_boot=100)
    assert c.spearman_rho is None and c.pearson_r is None
    assert c.spearman_p is None and c.pearson_p is None
    assert c.spearman_ci95 is None and c.pearson_ci95 is None
    assert fragment in c.note
    json.dumps(c.to_dict(), allow_nan=False)


def test_n_three_is_defined() -> None:
    c = correlate([1.0, 2.0, 3.0], [1.0, 3.0, 2.0], n_boot=200)
    assert c.spearman_rho == pytest.approx(0.5)
    # Many resamples of 3 rows are constant; they are skipped and reported.
    assert "resamples were constant" in c.note


def test_to_dict_is_json_ready() -> None:
    x, y, labels = _clustered()
    d = correlate(x, y, clusters=labels, n_boot=50).to_dict()
    text = json.dumps(d, allow_nan=False)
    back = json.loads(text)
    assert back["n"] == x.size
    assert isinstance(back["spearman_ci95"], list) and len(back["spearman_ci95"]) == 2
    assert set(back) >= {
        "n",
        "spearman_rho",
        "spearman_p",
        "pearson_r",
        "pearson_p",
        "spearman_ci95",
        "pearson_ci95",
        "bootstrap_unit",
        "n_boot",
        "seed",
        "note",
    }


def test_no_bootstrap_and_single_cluster() -> None:
    x, y = _data(n=30)
    assert correlate(x, y, n_boot=0).spearman_ci95 is None
    single = correlate(x, y, clusters=["a"] * 30, n_boot=100)
    assert single.spearman_ci95 is None and single.n_clusters == 1
    assert "fewer than 2 clusters" in single.note
    assert single.spearman_rho is not None


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"x": [1, 2, 3], "y": [1, 2]}, "differ in length"),
        ({"x": [1, 2, np.inf], "y": [1, 2, 3]}, "infinite"),
        ({"x": [[1, 2], [3, 4]], "y": [[1, 2], [3, 4]]}, "1-D"),
        ({"x": ["a", "b", "c"], "y": [1, 2, 3]}, "numbers"),
        ({"x": [1, 2, 3], "y": [1, 2, 3], "clusters": ["a", "b"]}, "clusters has 2 labels"),
        ({"x": [1, 2, 3], "y": [1, 2, 3], "clusters": ["a", None, "b"]}, "missing labels"),
        ({"x": [1, 2, 3], "y": [1, 2, 3], "n_boot": -1}, "n_boot"),
    ],
)
def test_bad_input_raises_input_error(kwargs, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment.replace("(", r"\(")):
        correlate(**kwargs)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.floats(-1e6, 1e6), st.just(float("nan"))),
            st.one_of(st.floats(-1e6, 1e6), st.just(float("nan"))),
        ),
        max_size=12,
    )
)
def test_any_finite_or_nan_input_gives_json_ready_result(pairs) -> None:
    x = [p[0] for p in pairs]
    y = [p[1] for p in pairs]
    c = correlate(x, y, n_boot=30)
    assert isinstance(c, Correlation)
    json.dumps(c.to_dict(), allow_nan=False)
    if c.spearman_rho is not None:
        assert -1 <= c.spearman_rho <= 1 and -1 <= c.pearson_r <= 1


# --- dependent correlations ------------------------------------------------------------------


def test_mrr_matches_hand_computed_example() -> None:
    # r_xy = .6, r_xz = .4, r_yz = .5, n = 100, by hand:
    z_xy = 0.5 * math.log((1 + 0.6) / (1 - 0.6))  # 0.5 ln 4 = 0.693147
    z_xz = 0.5 * math.log((1 + 0.4) / (1 - 0.4))  # 0.5 ln(7/3) = 0.423649
    r2_bar = (0.6**2 + 0.4**2) / 2  # 0.26
    f = (1 - 0.5) / (2 * (1 - r2_bar))  # 0.5 / 1.48 = 0.337838 (< 1, no cap)
    h = (1 - f * r2_bar) / (1 - r2_bar)  # 0.912162 / 0.74 = 1.232652
    z = (z_xy - z_xz) * math.sqrt((100 - 3) / (2 * (1 - 0.5) * h))  # 0.269498 * 8.870860
    assert z == pytest.approx(2.3907, abs=1e-4)
    out = dependent_correlation_test(0.6, 0.4, 0.5, 100)
    assert out["method"] == MRR and out["n"] == 100
    assert out["z"] == pytest.approx(z, rel=1e-12)
    assert out["p_two_sided"] == pytest.approx(2 * (1 - stats.norm.cdf(z)), rel=1e-9)
    assert out["p_two_sided"] == pytest.approx(0.0168, abs=1e-4)


def test_steiger_matches_hand_computed_example() -> None:
    r_bar = (0.6 + 0.4) / 2  # 0.5
    psi = 0.5 * (1 - 2 * r_bar**2) - 0.5 * r_bar**2 * (1 - 2 * r_bar**2 - 0.5**2)  # 0.21875
    c = psi / (1 - r_bar**2) ** 2  # 0.21875 / 0.5625 = 0.388889
    z = (math.atanh(0.6) - math.atanh(0.4)) * math.sqrt(97) / math.sqrt(2 - 2 * c)
    assert z == pytest.approx(2.4009, abs=1e-4)
    out = dependent_correlation_test(0.6, 0.4, 0.5, 100, method=STEIGER)
    assert out["method"] == STEIGER
    assert out["z"] == pytest.approx(z, rel=1e-12)


@pytest.mark.parametrize("method", [MRR, STEIGER])
@pytest.mark.parametrize(
    ("r_xy", "r_xz", "r_yz", "n"),
    [(0.6, 0.4, 0.5, 100), (-0.3, 0.55, -0.2, 550), (0.1, 0.12, 0.9, 40)],
)
def test_dependent_test_symmetries(method, r_xy, r_xz, r_yz, n) -> None:
    a = dependent_correlation_test(r_xy, r_xz, r_yz, n, method=method)
    swapped = dependent_correlation_test(r_xz, r_xy, r_yz, n, method=method)
    assert swapped["z"] == pytest.approx(-a["z"], rel=1e-12)
    assert swapped["p_two_sided"] == pytest.approx(a["p_two_sided"], rel=1e-12)
    # Flipping the sign of x flips both correlations with it.
    flipped = dependent_correlation_test(-r_xy, -r_xz, r_yz, n, method=method)
    assert flipped["z"] == pytest.approx(-a["z"], rel=1e-12)
    # More cases, same correlations: stronger evidence.
    bigger = dependent_correlation_test(r_xy, r_xz, r_yz, 4 * n, method=method)
    assert abs(bigger["z"]) > abs(a["z"])
    assert a["p_two_sided"] == pytest.approx(2 * stats.norm.sf(abs(a["z"])), rel=1e-9)
    assert bigger["p_two_sided"] < a["p_two_sided"]


@pytest.mark.parametrize("method", [MRR, STEIGER])
def test_equal_correlations_give_z_zero(method) -> None:
    out = dependent_correlation_test(0.45, 0.45, 0.3, 80, method=method)
    assert out["z"] == pytest.approx(0.0, abs=1e-12)
    assert out["p_two_sided"] == pytest.approx(1.0)


def test_higher_r_yz_makes_the_same_gap_more_significant() -> None:
    # Strongly related predictors share noise, so a given gap between them is less likely by chance.
    low = dependent_correlation_test(0.6, 0.4, 0.1, 100)
    high = dependent_correlation_test(0.6, 0.4, 0.8, 100)
    assert high["z"] > low["z"] > 0


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ((1.2, 0.4, 0.5, 100), "outside"),
        ((0.6, 0.4, 0.5, 3), "n must be"),
        ((0.6, 0.4, 0.5, 10.5), "n must be"),
        ((1.0, 0.4, 0.5, 100), "Fisher z"),
        ((0.6, 0.4, 1.0, 100), "same variable"),
        ((0.9, -0.9, 0.9, 100), "positive semi-definite"),
        ((float("nan"), 0.4, 0.5, 100), "finite"),
    ],
)
def test_dependent_test_rejects_bad_input(args, fragment) -> None:
    with pytest.raises(InputError, match=fragment):
        dependent_correlation_test(*args)
    with pytest.raises(InputError, match="method"):
        dependent_correlation_test(0.6, 0.4, 0.5, 100, method="fisher")


# --- partial correlation ---------------------------------------------------------------------


def _formula(r_xy: float, r_xz: float, r_yz: float) -> float:
    return (r_xy - r_xz * r_yz) / math.sqrt((1 - r_xz**2) * (1 - r_yz**2))


def test_partial_pearson_hand_computed_small_case() -> None:
    x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    y = [2.0, 1.0, 4.0, 3.0, 6.0, 5.0]
    z = [1.0, 1.0, 2.0, 2.0, 3.0, 4.0]
    c = np.corrcoef([x, y, z])
    expected = _formula(c[0, 1], c[0, 2], c[1, 2])
    out = partial_correlation(x, y, z, method="pearson")
    assert out["r"] == pytest.approx(expected, abs=1e-12)
    assert out["n"] == 6 and out["method"] == "pearson"
    t = expected * math.sqrt(3 / (1 - expected**2))  # df = n - 2 - 1 = 3
    assert out["p"] == pytest.approx(2 * stats.t.sf(abs(t), 3), rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_partial_spearman_matches_formula_on_spearman_rhos(seed: int) -> None:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=80)
    x = z + rng.normal(size=80)
    y = np.exp(z) + rng.normal(size=80)
    rho = stats.spearmanr(np.column_stack([x, y, z])).statistic
    out = partial_correlation(x, y, z, method="spearman")
    assert out["r"] == pytest.approx(_formula(rho[0, 1], rho[0, 2], rho[1, 2]), abs=1e-10)
    # The raw rho is mostly shared dependence on z; the partial is much smaller.
    assert abs(out["r"]) < abs(rho[0, 1])


def test_partial_with_two_covariates_equals_recursive_formula() -> None:
    rng = np.random.default_rng(5)
    z1, z2 = rng.normal(size=(2, 60))
    x = z1 - z2 + rng.normal(size=60)
    y = z1 + 0.5 * z2 + rng.normal(size=60)
    out = partial_correlation(x, y, np.column_stack([z1, z2]), method="pearson")
    r_xy_1 = partial_correlation(x, y, z1, method="pearson")["r"]
    r_x2_1 = partial_correlation(x, z2, z1, method="pearson")["r"]
    r_y2_1 = partial_correlation(y, z2, z1, method="pearson")["r"]
    assert out["r"] == pytest.approx(_formula(r_xy_1, r_x2_1, r_y2_1), abs=1e-10)
    assert out["n_covariates"] == 2


def test_partial_edge_cases() -> None:
    assert partial_correlation([1, 2, 3], [3, 1, 2], [1, 2, 2])["r"] is None  # df = 0
    out = partial_correlation([1, 2, np.nan, 4, 5, 6], [2, 1, 3, 4, 6, 5], [1, 1, 2, 2, 3, 3])
    assert out["n"] == 5
    explained = partial_correlation([1, 2, 3, 4, 5], [2, 1, 4, 3, 5], [1, 2, 3, 4, 5])
    assert explained["r"] is None and "fully explained" in explained["note"]
    with pytest.raises(InputError, match="rows"):
        partial_correlation([1, 2, 3, 4], [1, 2, 3, 4], [1, 2])
    with pytest.raises(InputError, match="method"):
        partial_correlation([1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 5], method="kendall")


# --- within-group correlations ---------------------------------------------------------------


def test_within_group_matches_scipy_per_group_and_pooled() -> None:
    x, y, labels = _clustered()
    out = within_group_correlations(x, y, labels)
    assert out["n"] == x.size and out["n_groups"] == 5
    for label in np.unique(labels):
        m = labels == label
        g = out["per_group"][label]
        assert g["n"] == m.sum()
        assert g["spearman_rho"] == pytest.approx(stats.spearmanr(x[m], y[m])[0])
        assert g["pearson_r"] == pytest.approx(stats.pearsonr(x[m], y[m])[0])
    assert out["pooled_spearman"] == pytest.approx(stats.spearmanr(x, y)[0])
    means_x = [x[labels == g].mean() for g in np.unique(labels)]
    means_y = [y[labels == g].mean() for g in np.unique(labels)]
    assert out["between_group_spearman"] == pytest.approx(stats.spearmanr(means_x, means_y)[0])
    assert out["mean_within_spearman"] == pytest.approx(
        np.mean([out["per_group"][g]["spearman_rho"] for g in out["per_group"]])
    )
    json.dumps(out, allow_nan=False)


def test_within_group_separates_simpsons_paradox() -> None:
    # Inside each group y falls with x, but groups with higher x sit higher: pooled is positive.
    rng = np.random.default_rng(0)
    x, y, g = [], [], []
    for k in range(4):
        xs = rng.uniform(0, 1, size=30)
        x += list(xs + 3 * k)
        y += list(-xs + 3 * k + rng.normal(scale=0.05, size=30))
        g += [k] * 30
    out = within_group_correlations(x, y, g)
    assert out["pooled_spearman"] > 0.5
    assert out["mean_within_spearman"] < -0.9
    assert out["between_group_spearman"] == pytest.approx(1.0)
    assert set(out["per_group"]) == {"0", "1", "2", "3"}
    assert "group differences" in out["note"]


def test_within_group_small_groups_and_errors() -> None:
    out = within_group_correlations([1, 2, 3, 4, 5], [1, 3, 2, 5, 4], ["a", "a", "b", "b", "b"])
    assert out["per_group"]["a"]["spearman_rho"] is None
    assert "n < 3" in out["per_group"]["a"]["note"]
    assert out["n_groups_defined"] == 1
    assert out["between_group_spearman"] is None  # only two group means
    with pytest.raises(InputError, match="groups has"):
        within_group_correlations([1, 2, 3], [1, 2, 3], ["a"])
