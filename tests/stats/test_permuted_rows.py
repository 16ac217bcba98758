"""The gathered ranks of permuted rows against ranking every row (property), and the difference test against a
slow loop that ranks each permuted leakage vector with scipy (cross-check)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats

from persona_assets.stats.permutation_tests import (
    difference_permutation_test,
    leakage_permutation_test,
    leakage_roles,
    persona_permutations,
)
from persona_assets.stats.permuted_rows import rearranged_ranks, row_statistics


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(3, 8),
    decimals=st.integers(0, 3),
    missing=st.floats(0.0, 0.5),
    seed=st.integers(0, 2**31 - 1),
)
def test_gathered_ranks_are_the_ranks_of_each_row(n, decimals, missing, seed):
    rng = np.random.default_rng(seed)
    leakage = rng.random((n, n)).round(decimals)  # rounding makes ties
    leakage[rng.random((n, n)) < missing] = np.nan
    np.fill_diagonal(leakage, np.nan)
    s, t = np.nonzero(np.isfinite(leakage))
    assume(s.size >= 3)  # as leakage_permutation_test, which reports "test undefined" for fewer pairs
    perms, _ = persona_permutations(leakage_roles(leakage), 50, rng)
    values = leakage[perms[:, s], perms[:, t]]
    ranks = rearranged_ranks(leakage, s, t, perms)
    if ranks is None:
        # Only a permutation that reaches an unmeasured pair (a NaN in its row) makes the gather decline.
        assert not np.isfinite(values).all()
        return
    np.testing.assert_array_equal(ranks, stats.rankdata(values, axis=1))
    fixed = rng.random(s.size)
    with_ranks = row_statistics(values, fixed, permuted_ranks=ranks)
    without = row_statistics(values, fixed)
    np.testing.assert_array_equal(with_ranks[0], without[0])
    np.testing.assert_array_equal(with_ranks[1], without[1])


@pytest.mark.parametrize("measured", [0, 1, 2])
def test_fewer_than_three_measured_pairs_are_not_ranked(measured):
    """Why the property above assumes 3 pairs: with fewer (hypothesis found a table with none) the leakage test
    reports the test undefined before it ranks or correlates anything."""
    leakage = np.full((3, 3), np.nan)
    for k, (s, t) in enumerate([(0, 1), (1, 0)][:measured]):
        leakage[s, t] = 0.1 * (k + 1)
    result = leakage_permutation_test(np.arange(9.0).reshape(3, 3), leakage, n_perm=50, seed=0)
    assert result["n"] == measured and result["n_permutations"] == 0
    assert result["spearman_rho"] is None and result["pearson_r"] is None
    assert result["note"] == "fewer than 3 measured pairs or constant input: test undefined"


def test_full_grid_with_role_strata_always_gathers():
    rng = np.random.default_rng(3)
    leakage = rng.random((7, 7)).round(1)
    leakage[:3, :] = np.nan  # personas 0-2 are targets only
    np.fill_diagonal(leakage, np.nan)
    s, t = np.nonzero(np.isfinite(leakage))
    perms, _ = persona_permutations(leakage_roles(leakage), 200, rng)
    assert rearranged_ranks(leakage, s, t, perms) is not None


def test_difference_test_matches_a_loop_over_scipy_spearman():
    rng = np.random.default_rng(11)
    n = 7
    js = rng.random((n, n))
    cosine = -js + rng.normal(scale=0.3, size=(n, n))
    leakage = -js + rng.normal(scale=0.5, size=(n, n))
    np.fill_diagonal(leakage, np.nan)
    out = difference_permutation_test(-js, cosine, leakage, n_perm=99, seed=5)
    s, t = np.nonzero(np.isfinite(leakage))
    perms, _ = persona_permutations(leakage_roles(leakage), 99, np.random.default_rng(5))
    diffs = np.array(
        [
            stats.spearmanr(-js[s, t], leakage[p[s], p[t]])[0] - stats.spearmanr(cosine[s, t], leakage[p[s], p[t]])[0]
            for p in perms
        ]
    )
    assert out["difference"] == pytest.approx(diffs[0], rel=1e-12, abs=1e-12)
    extreme = (np.abs(diffs) >= abs(diffs[0]) * (1 - 1e-12) - 1e-12).sum()
    assert out["p_two_sided"] == extreme / diffs.size
