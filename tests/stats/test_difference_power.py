"""Power of the JS-vs-cosine difference test at a run's design: what it finds on a design where the
answer is known, and the clause the summary prints."""

from __future__ import annotations

import numpy as np
from scipy import stats

from persona_assets.stats.difference_power import MIXES, difference_power, power_text, simulated_difference
from persona_assets.stats.permutation_tests import difference_permutation_test, leakage_roles


def _design(seed: int, n: int = 14, k: int = 8, noise: float = 0.3):
    rng = np.random.default_rng(seed)
    js = rng.normal(size=(n, n))
    js = (js + js.T) / 2
    cos = rng.normal(size=(n, n))
    cos = (cos + cos.T) / 2
    leak = np.full((n, n), np.nan)
    leak[:k] = -js[:k] + noise * rng.normal(size=(k, n))  # JS alone drives leakage, strongly
    np.fill_diagonal(leak, np.nan)
    return js, cos, leak


def test_power_rises_with_the_true_difference_and_finds_a_detectable_one() -> None:
    js, cos, leak = _design(0)
    power = difference_power(js, cos, leak, n_sims=40, n_perm=99, seed=1)
    rows = power["by_mix"]
    assert [r["js_weight"] for r in rows] == list(MIXES)
    differences = [r["true_difference"] for r in rows]
    assert differences[0] < -0.3 and differences[-1] > 0.3 and abs(differences[5]) < 0.1  # θ = 0.5: no difference
    assert rows[-1]["power"] >= 0.8 and rows[5]["power"] <= 0.2
    found = power["minimal_detectable_difference"]
    assert found["js_better"] is not None and 0 < found["js_better"] <= differences[-1]
    assert "JS better by ≥" in power_text(power)


def test_power_of_a_small_design_says_none_reaches_80_percent() -> None:
    js, cos, leak = _design(2, n=6, k=3, noise=3.0)
    power = difference_power(js, cos, leak, n_sims=20, n_perm=49, seed=0)
    assert power["minimal_detectable_difference"] == {"js_better": None, "cosine_better": None}
    assert "none up to" in power_text(power)
    assert difference_power(js, cos, np.full_like(leak, np.nan), n_sims=5)["minimal_detectable_difference"] is None


def test_a_simulated_run_gives_the_floats_of_the_difference_test_itself() -> None:
    """`simulated_difference` (set-up shared by the simulated runs) against `difference_permutation_test` on the same
    matrices and seeds: full grids, partial grids (a permuted row leaves the measured pairs), constant leakage,
    enumerated (exact) and drawn permutations."""
    compared = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(4, 11))
        js, cos, leak = _design(seed, n=n, k=int(rng.integers(2, n)), noise=float(rng.uniform(0.1, 3)))
        if seed % 3 == 0:
            leak[rng.random(leak.shape) < 0.2] = np.nan  # not a sources × targets grid
        if seed % 11 == 0:
            leak[np.isfinite(leak)] = 0.5  # constant: undefined
        measured = np.isfinite(leak) & ~np.eye(n, dtype=bool)
        s, t = np.nonzero(measured)
        roles = leakage_roles(np.where(measured, leak, np.nan))
        a, b = -js[s, t], cos[s, t]
        n_perm = int(rng.choice([19, 99, 10_000]))
        ours = simulated_difference(
            leak, s, t, roles, a, b, (stats.rankdata(a), stats.rankdata(b)), n_perm=n_perm, seed=seed
        )
        test = difference_permutation_test(-js, cos, leak, n_perm=n_perm, seed=seed)
        if test["difference"] is None:
            assert ours is None
            continue
        assert ours == (test["difference"], test["p_two_sided"])  # the same floats, not merely close
        compared += 1
    assert compared > 40
