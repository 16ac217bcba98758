"""Mantel and leakage permutation tests, the crossed bootstrap: known answers, brute-force
cross-checks, properties."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from persona_assets.runs.errors import InputError
from persona_assets.stats.permutation_tests import (
    crossed_bootstrap,
    difference_permutation_test,
    leakage_permutation_test,
    leakage_roles,
    mantel_test,
    persona_permutations,
)


def _symmetric(rng: np.random.Generator, n: int, persona_sd: float = 1.0) -> np.ndarray:
    u = rng.normal(size=n) * persona_sd
    noise = rng.normal(size=(n, n))
    m = u[:, None] + u[None, :] + (noise + noise.T) / 2
    np.fill_diagonal(m, 0.0)
    return m


def _brute_force_mantel(x: np.ndarray, y: np.ndarray) -> float:
    """Exact two-sided Mantel p over all N! relabellings, with scipy's Spearman."""
    n = x.shape[0]
    i, j = np.triu_indices(n, k=1)
    observed = abs(stats.spearmanr(x[i, j], y[i, j])[0])
    hits = total = 0
    for perm in itertools.permutations(range(n)):
        p = np.array(perm)
        rho = stats.spearmanr(x[p[i], p[j]], y[i, j])[0]
        hits += abs(rho) >= observed - 1e-12
        total += 1
    return hits / total


def test_mantel_exact_matches_brute_force_enumeration() -> None:
    rng = np.random.default_rng(3)
    x, y = _symmetric(rng, 5), _symmetric(rng, 5)
    result = mantel_test(x, y, n_perm=1000, seed=0)  # 5! = 120 ≤ 1000: enumerated
    assert result["exact"] and result["n_permutations"] == 120
    assert result["spearman_p"] == pytest.approx(_brute_force_mantel(x, y), abs=1e-12)
    assert result["spearman_rho"] == pytest.approx(
        stats.spearmanr(x[np.triu_indices(5, 1)], y[np.triu_indices(5, 1)])[0]
    )
    assert result["resampling_unit"].startswith("persona labels")


def test_mantel_known_answer_identical_matrices() -> None:
    # y = x: only the relabellings that leave the pair values' order unchanged reach |ρ| = 1.
    rng = np.random.default_rng(0)
    x = _symmetric(rng, 4)
    result = mantel_test(x, x.copy(), n_perm=100, seed=0)
    assert result["exact"] and result["n_permutations"] == 24
    assert result["spearman_rho"] == pytest.approx(1.0)
    # Generic values: only the identity maps the pair values onto themselves (1/24).
    assert result["spearman_p"] == pytest.approx(1 / 24)


def test_mantel_random_permutations_are_seeded_and_never_zero() -> None:
    rng = np.random.default_rng(1)
    x = _symmetric(rng, 9)
    y = x + 0.01 * _symmetric(rng, 9)
    a = mantel_test(x, y, n_perm=199, seed=5)
    b = mantel_test(x, y, n_perm=199, seed=5)
    assert a == b
    assert not a["exact"] and a["n_permutations"] == 199 and a["seed"] == 5
    assert a["spearman_p"] == pytest.approx(1 / 200)  # the smallest p a random test can give


def test_mantel_random_agrees_with_exact_within_monte_carlo_error() -> None:
    rng = np.random.default_rng(7)
    x, y = _symmetric(rng, 6), _symmetric(rng, 6)
    exact = mantel_test(x, y, n_perm=1000, seed=0)  # 720: enumerated
    sampled = mantel_test(x, y, n_perm=400, seed=0)  # 720 > 400: sampled
    assert exact["exact"] and not sampled["exact"]
    p = exact["spearman_p"]
    assert abs(sampled["spearman_p"] - p) < 4 * math.sqrt(p * (1 - p) / 400) + 0.01


def test_mantel_permutes_the_complete_matrix_and_keeps_the_pair_set() -> None:
    rng = np.random.default_rng(2)
    x, y = _symmetric(rng, 6), _symmetric(rng, 6)
    y[3, 4] = y[4, 3] = np.nan
    result = mantel_test(x, y, n_perm=50, seed=0)
    assert result["permuted_matrix"] == "x" and result["n"] == 14 and result["note"] is None
    swapped = mantel_test(y, x, n_perm=50, seed=0)
    assert swapped["permuted_matrix"] == "y"


def test_mantel_rejects_bad_shapes() -> None:
    with pytest.raises(InputError, match="square"):
        mantel_test(np.zeros((3, 4)), np.zeros((3, 4)), n_perm=10, seed=0)
    with pytest.raises(InputError, match="infinite"):
        mantel_test(np.full((3, 3), np.inf), np.zeros((3, 3)), n_perm=10, seed=0)


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=4, max_value=8), st.integers(min_value=0, max_value=10_000))
def test_mantel_p_is_a_probability_and_symmetric_in_its_arguments(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, y = _symmetric(rng, n), _symmetric(rng, n)
    a = mantel_test(x, y, n_perm=200, seed=seed)
    b = mantel_test(y, x, n_perm=200, seed=seed)
    assert 0 < a["spearman_p"] <= 1 and 0 < a["pearson_p"] <= 1
    assert a["spearman_rho"] == pytest.approx(b["spearman_rho"])
    if a["exact"]:  # the same set of relabellings either way: the same p
        assert a["spearman_p"] == pytest.approx(b["spearman_p"])


def test_stratified_permutations_stay_in_their_strata() -> None:
    perms, exact = persona_permutations(["s", "s", "t", "t", "t"], 1000, np.random.default_rng(0))
    assert exact and len(perms) == 2 * 6 and (perms[0] == np.arange(5)).all()
    assert {tuple(sorted(p[:2])) for p in perms} == {(0, 1)}
    assert len({tuple(p) for p in perms}) == 12
    sampled, exact = persona_permutations(["s"] * 3 + ["t"] * 6, 50, np.random.default_rng(0))
    assert not exact and sampled.shape == (51, 9)
    assert all(set(p[:3]) == {0, 1, 2} for p in sampled)


def _leakage(rng: np.random.Generator, n: int = 7, n_sources: int = 3) -> np.ndarray:
    leak = np.full((n, n), np.nan)
    leak[:n_sources] = rng.uniform(size=(n_sources, n))
    np.fill_diagonal(leak, np.nan)
    return leak


def test_leakage_permutation_exact_matches_brute_force() -> None:
    rng = np.random.default_rng(4)
    js, leak = _symmetric(rng, 6), _leakage(rng, 6, 2)
    result = leakage_permutation_test(js, leak, n_perm=10_000, seed=0)
    assert result["exact"] and result["n_permutations"] == 2 * 24
    assert leakage_roles(leak) == ["source=True,target=True"] * 2 + ["source=False,target=True"] * 4
    s, t = np.nonzero(np.isfinite(leak))
    observed = abs(stats.spearmanr(js[s, t], leak[s, t])[0])
    hits = total = 0
    for head in itertools.permutations([0, 1]):
        for tail in itertools.permutations([2, 3, 4, 5]):
            p = np.array(head + tail)
            hits += abs(stats.spearmanr(js[s, t], leak[p[s], p[t]])[0]) >= observed - 1e-12
            total += 1
    assert result["spearman_p"] == pytest.approx(hits / total)
    assert result["n"] == 10 and result["spearman_rho"] == pytest.approx(stats.spearmanr(js[s, t], leak[s, t])[0])


def test_difference_test_is_zero_for_identical_predictors_and_matches_two_spearmans() -> None:
    rng = np.random.default_rng(6)
    a, b, leak = _symmetric(rng, 7), _symmetric(rng, 7), _leakage(rng)
    same = difference_permutation_test(a, a.copy(), leak, n_perm=100, seed=0)
    assert same["difference"] == pytest.approx(0.0, abs=1e-12) and same["p_two_sided"] == pytest.approx(1.0)
    result = difference_permutation_test(a, b, leak, n_perm=100, seed=0)
    s, t = np.nonzero(np.isfinite(leak))
    expected = stats.spearmanr(a[s, t], leak[s, t])[0] - stats.spearmanr(b[s, t], leak[s, t])[0]
    assert result["difference"] == pytest.approx(expected)
    assert 0 < result["p_two_sided"] <= 1


def test_crossed_bootstrap_spearman_equals_expanded_sample() -> None:
    # A resample's Spearman equals scipy's on the sample with (s, t) repeated c_s · c_t times.
    from persona_assets.stats.permutation_tests import _crossed_weights, _weighted_spearman

    rng = np.random.default_rng(0)
    src = np.repeat(["a", "b", "c"], 4)
    tgt = np.tile(["w", "x", "y", "z"], 3)
    x, y = rng.normal(size=12), rng.normal(size=12)
    w, n_s, n_t = _crossed_weights(src, tgt, 20, np.random.default_rng(1))
    assert (n_s, n_t) == (3, 4)
    boot = _weighted_spearman(x, y, w)
    for b in range(20):
        reps = w[b].astype(int)
        if len(set(np.repeat(x, reps))) > 1:
            assert boot[b] == pytest.approx(stats.spearmanr(np.repeat(x, reps), np.repeat(y, reps))[0], abs=1e-12)


def test_crossed_bootstrap_is_seeded_and_wider_than_independent_pairs_with_target_effects() -> None:
    rng = np.random.default_rng(9)
    n_s, n_t = 5, 10
    src, tgt = np.repeat(np.arange(n_s), n_t), np.tile(np.arange(n_t), n_s)
    target_effect_x, target_effect_y = rng.normal(size=n_t), rng.normal(size=n_t)
    x = target_effect_x[tgt] + 0.3 * rng.normal(size=50)
    y = target_effect_y[tgt] + 0.3 * rng.normal(size=50)
    a = crossed_bootstrap(x, y, src, tgt, n_boot=500, seed=3)
    assert a == crossed_bootstrap(x, y, src, tgt, n_boot=500, seed=3)
    from persona_assets.stats.correlate import correlate

    rows = correlate(x, y, n_boot=500, seed=3)
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(a["spearman_ci95"]) > 1.5 * width(rows.spearman_ci95)
    assert a["resampling_unit"].startswith("personas resampled") and a["n_boot"] == 500


def test_crossed_weights_draw_a_persona_once_for_both_roles() -> None:
    # Every persona is source and target of every other: with one count per persona the weight of
    # (s, t) is c_s · c_t = the weight of (t, s). Independent source and target draws break this.
    from persona_assets.stats.permutation_tests import _crossed_weights

    s, t = np.nonzero(~np.eye(6, dtype=bool))
    w, n_s, n_t = _crossed_weights(s, t, 300, np.random.default_rng(0))
    assert (n_s, n_t) == (6, 6)
    back = {(a, b): k for k, (a, b) in enumerate(zip(s, t))}
    reverse = np.array([back[(b, a)] for a, b in zip(s, t)])
    assert np.array_equal(w, w[:, reverse]) and w.std() > 0
    # 2 dual-role personas (0, 1) and 3 target-only ones: drawn within their roles, so every
    # resample has 2 source draws in all, and the pairs (0, 1) and (1, 0) weigh c_0 · c_1 both.
    src, tgt = np.repeat([0, 1], 4), np.array([1, 2, 3, 4, 0, 2, 3, 4])
    w2, n_s2, n_t2 = _crossed_weights(src, tgt, 500, np.random.default_rng(1))
    assert (n_s2, n_t2) == (2, 5)
    assert np.array_equal(w2[:, 0], w2[:, 4])
