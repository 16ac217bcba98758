"""Power of the JS-vs-cosine difference test at a run's design: what it finds on a design where the
answer is known, and the clause the summary prints."""

from __future__ import annotations

import numpy as np

from persona_assets.stats.difference_power import MIXES, difference_power, power_text


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
