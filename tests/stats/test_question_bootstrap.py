"""The question bootstrap: known answers (ideal-bootstrap SE), cross-checks against a direct
resampling loop, missing questions, and the kill-gate calls it feeds."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from persona_assets.stats import intervals as intervals_mod
from persona_assets.stats import question_bootstrap as qboot
from persona_assets.analysis.kill_criteria import (
    discrimination_verdict,
    label_discrimination,
    label_redundancy,
    max_sample_std,
    redundancy_verdict,
)


def _table(values: np.ndarray) -> pd.DataFrame:
    """values[pair, question] -> the long per-question table."""
    rows = []
    for k in range(values.shape[0]):
        for q in range(values.shape[1]):
            if np.isfinite(values[k, q]):
                rows.append({"persona_a": f"a{k}", "persona_b": f"b{k}", "question_index": q, "js": values[k, q]})
    return pd.DataFrame(rows)


def test_se_matches_the_ideal_bootstrap_formula() -> None:
    # The bootstrap SE of a mean over Q questions is sd_pop / sqrt(Q) (Efron): check it per pair.
    rng = np.random.default_rng(0)
    values = rng.gamma(2.0, 0.01, size=(6, 12))
    qb = qboot.question_bootstrap(_table(values), "js", n_boot=20_000, seed=1)
    rows = qboot.pair_intervals(qb)
    expected = values.std(axis=1, ddof=0) / math.sqrt(12)
    for row, se in zip(rows, expected):
        assert row["se"] == pytest.approx(se, rel=0.03)
    assert qb.values == pytest.approx(values.mean(axis=1))


def test_draws_equal_a_direct_resampling_loop() -> None:
    rng = np.random.default_rng(2)
    values = rng.uniform(size=(4, 5))
    qb = qboot.question_bootstrap(_table(values), "js", n_boot=30, seed=7)
    draws = np.random.default_rng(7).integers(0, 5, size=(30, 5))
    direct = np.stack([values[:, d].mean(axis=1) for d in draws])
    assert qb.draws == pytest.approx(direct, abs=1e-15)


def test_missing_questions_average_over_the_present_ones() -> None:
    values = np.array([[1.0, 2.0, 3.0], [4.0, np.nan, 6.0]])
    qb = qboot.question_bootstrap(_table(values), "js", n_boot=50, seed=0)
    assert qb.values == pytest.approx([2.0, 5.0])
    draws = np.random.default_rng(0).integers(0, 3, size=(50, 3))
    for b, d in enumerate(draws):
        present = [q for q in d if q != 1]
        expected = np.mean([values[1, q] for q in present]) if present else np.nan
        if present:
            assert qb.draws[b, 1] == pytest.approx(expected)
        else:
            assert np.isnan(qb.draws[b, 1])


def test_difference_se_includes_the_covariance_of_shared_questions() -> None:
    # Two pairs that move together with the question: their difference is certain even though
    # each value is uncertain.
    base = np.linspace(0.01, 0.1, 10)
    values = np.stack([base, base + 0.002, base + 0.5])
    qb = qboot.question_bootstrap(_table(values), "js", n_boot=2000, seed=0)
    out = qboot.differences_against_uncertainty(qb, floor_nats=None)
    assert out["n_pair_differences"] == 3
    assert out["n_within_question_uncertainty"] == 0  # every difference is constant over questions
    direct_se = np.std(qb.draws[:, 1] - qb.draws[:, 0], ddof=1)
    assert direct_se == pytest.approx(0.0, abs=1e-12)
    assert qboot.pair_intervals(qb)[0]["se"] > 0.005
    noisy = qboot.question_bootstrap(_table(np.stack([base, base[::-1]])), "js", n_boot=2000, seed=0)
    assert qboot.differences_against_uncertainty(noisy, floor_nats=1.0)["n_within_question_uncertainty"] == 1


def test_a_difference_below_the_scoring_precision_bound_is_not_a_finding() -> None:
    # Three pairs, constant over questions (no question uncertainty): differences 0.002, 0.5, 0.498.
    base = np.linspace(0.01, 0.1, 10)
    qb = qboot.question_bootstrap(_table(np.stack([base, base + 0.002, base + 0.5])), "js", n_boot=200, seed=0)
    unbounded = qboot.differences_against_uncertainty(qb, floor_nats=1e-4)
    assert unbounded["n_findings"] == 3 and unbounded["n_below_scoring_precision"] is None
    bounded = qboot.differences_against_uncertainty(qb, floor_nats=1e-4, scoring_precision_nats=0.01)
    assert bounded["n_below_scoring_precision"] == 1 and bounded["n_findings"] == 2
    assert "twice the scoring-precision" in bounded["findings_rule"]
    # Each value may move by the bound: a difference of 0.002 is within twice a bound of 0.0011, not of 0.0009.
    assert qboot.differences_against_uncertainty(qb, floor_nats=1e-4, scoring_precision_nats=0.0011)["n_findings"] == 2
    assert qboot.differences_against_uncertainty(qb, floor_nats=1e-4, scoring_precision_nats=0.0009)["n_findings"] == 3
    assert qboot.differences_against_uncertainty(qb, floor_nats=0.6, scoring_precision_nats=0.01)["n_findings"] == 0


def test_discrimination_point_values_equal_the_verdict_and_ci_covers_them() -> None:
    rng = np.random.default_rng(4)
    values = rng.gamma(3.0, 0.01, size=(15, 20))
    qb = qboot.question_bootstrap(_table(values), "js", n_boot=1000, seed=0)
    intervals = qboot.discrimination_intervals(qb)
    verdict = discrimination_verdict(values.mean(axis=1), min_std=0.05, min_ratio=3.0)
    assert intervals["js_std"]["estimate"] == pytest.approx(verdict["evidence"]["js_std"])
    assert intervals["max_min_ratio"]["estimate"] == pytest.approx(verdict["evidence"]["max_min_ratio"])
    assert intervals["coefficient_of_variation"]["estimate"] == pytest.approx(
        verdict["evidence"]["coefficient_of_variation"]
    )
    # The std's interval is centred on its bias-corrected value (here all pairs share one true mean, so the plug-in
    # std is pure question noise and the correction moves it down); the ratio's basic interval covers its point.
    lo, hi = intervals["js_std"]["ci95"]
    assert lo < intervals["js_std"]["bias_corrected_estimate"] < hi
    assert intervals["js_std"]["bias_corrected_estimate"] < intervals["js_std"]["estimate"]
    lo, hi = intervals["max_min_ratio"]["ci95"]
    assert lo < intervals["max_min_ratio"]["estimate"] < hi


def test_spearman_interval_holds_the_other_vector_fixed() -> None:
    rng = np.random.default_rng(5)
    values = rng.uniform(size=(8, 10))
    other = values.mean(axis=1) + rng.normal(scale=0.05, size=8)
    qb = qboot.question_bootstrap(_table(values), "js", n_boot=200, seed=0)
    out = qboot.spearman_intervals(qb, {"layer1": other})["layer1"]
    assert out["estimate"] == pytest.approx(stats.spearmanr(values.mean(axis=1), other)[0])
    assert out["n"] == 8
    b = 17
    assert stats.spearmanr(qb.draws[b], other)[0] == pytest.approx(
        np.corrcoef(stats.rankdata(qb.draws[b]), stats.rankdata(other))[0, 1]
    )


def test_threshold_call_needs_the_estimate_and_the_whole_ci_on_its_side() -> None:
    assert qboot.threshold_call([0.01, 0.03], 0.05, estimate=0.02) == qboot.DECIDED
    assert qboot.threshold_call([0.04, 0.06], 0.05, estimate=0.045) == qboot.TOO_CLOSE
    # Point and interval disagree: the CI lies wholly above the threshold, the estimate below it.
    assert qboot.threshold_call([0.06, 0.08], 0.05, estimate=0.045) == qboot.TOO_CLOSE
    assert qboot.threshold_call([0.01, 0.03], 0.05, estimate=0.07) == qboot.TOO_CLOSE
    assert qboot.threshold_call([0.01, 0.05], 0.05, estimate=0.02) == qboot.TOO_CLOSE  # touching is not clear
    assert qboot.threshold_call(None, 0.05, estimate=0.02) is None
    assert qboot.threshold_call([0.01, 0.03], 0.05, estimate=None) is None
    assert qboot.ci_side([0.06, 0.08], 0.05) == "above" and qboot.ci_side([0.01, 0.07], 0.05) == "straddles"


def test_basic_ci_reflects_the_bootstrap_quantiles_about_the_estimate() -> None:
    # Known answer: resamples = point · exp(x) give [point · exp(−q97.5(x)), point · exp(−q2.5(x))].
    x = np.linspace(-0.1, 0.5, 1001)  # biased upwards, as a max/min ratio's resamples are
    lo, hi = qboot.basic_ci(2.0, 2.0 * np.exp(x), "log")
    q_lo, q_hi = np.percentile(x, [2.5, 97.5])
    assert lo == pytest.approx(2.0 * math.exp(-q_hi)) and hi == pytest.approx(2.0 * math.exp(-q_lo))
    assert hi < 2.0 * math.exp(q_hi)  # the percentile interval would sit higher
    rho_lo, rho_hi = qboot.basic_ci(-0.7, np.tanh(np.arctanh(-0.7) + 0.3 + np.linspace(-0.2, 0.2, 401)), "Fisher z")
    assert -1 < rho_lo < rho_hi < -0.7  # resamples attenuated towards 0: the interval moves away from 0
    assert qboot.basic_ci(None, x, "log") is None and qboot.basic_ci(1.0, np.array([1.0]), "log") is None


def test_std_bound_note_agrees_with_the_ddof1_verdict() -> None:
    # 66 values, half 0 and half 0.0995: sample std 0.0501 ≥ 0.05, so the std criterion passes and
    # no note may call it unreachable (the population bound b/2 = 0.04975 would).
    values = np.array([0.0] * 33 + [0.0995] * 33)
    verdict = discrimination_verdict(values, min_std=0.05, min_ratio=1.0)
    assert verdict["evidence"]["js_std"] == pytest.approx(0.0501, abs=1e-4)
    assert not verdict["evidence"]["std_below_threshold"]
    assert not any("unreachable" in n for n in verdict["notes"])
    lower = discrimination_verdict(np.array([0.0] * 33 + [0.0985] * 33), min_std=0.05, min_ratio=1.0)
    assert lower["evidence"]["std_below_threshold"] and any("unreachable" in n for n in lower["notes"])


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=2, max_value=40), st.floats(min_value=1e-4, max_value=1.0), st.integers(0, 10_000))
def test_no_sample_reaches_above_the_std_bound(n: int, b: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.choice([0.0, b], size=n) if seed % 2 else rng.uniform(0, b, size=n)
    assert values.std(ddof=1) <= max_sample_std(b, n) * (1 + 1e-12)
    half = np.array([0.0] * (n // 2) + [b] * (n - n // 2))
    if n % 2 == 0:  # the bound is attained
        assert half.std(ddof=1) == pytest.approx(max_sample_std(b, n))


def test_verdict_calls_decided_and_too_close() -> None:
    verdict = discrimination_verdict(np.linspace(0.01, 0.05, 20), min_std=0.05, min_ratio=3.0)
    assert verdict["killed"] and verdict["evidence"]["std_below_threshold"]
    decided = label_discrimination(
        dict(verdict, notes=[]),
        {
            "js_std": {"estimate": 0.012, "decision_ci99": [0.01, 0.014]},
            "max_min_ratio": {"estimate": 5.0, "decision_ci99": [4.0, 6.0]},
        },
    )
    assert decided["call"] == qboot.DECIDED and decided["question_bootstrap"]["js_std"]["call"] == qboot.DECIDED
    close = label_discrimination(
        dict(verdict, notes=[]),
        {
            "js_std": {"estimate": 0.012, "decision_ci99": [0.01, 0.06]},
            "max_min_ratio": {"estimate": 5.0, "decision_ci99": [2.0, 6.0]},
        },
    )
    assert close["call"] == qboot.TOO_CLOSE
    none = label_discrimination(dict(verdict, notes=[]), None)
    assert none["call"] is None and none["question_bootstrap"] is None

    redundancy = redundancy_verdict({"l10": 0.5, "l20": 0.85}, max_abs_rho=0.8)
    labelled = label_redundancy(
        redundancy,
        {
            "l10": {"estimate": 0.5, "decision_ci99": [0.4, 0.6]},
            "l20": {"estimate": 0.85, "decision_ci99": [0.78, 0.9]},
        },
    )
    assert labelled["killed"] and labelled["call"] == qboot.TOO_CLOSE
    # A pass is never decided by the ρ interval (it is not calibrated on that side).
    assert labelled["question_bootstrap"]["l10"]["call"] == qboot.TOO_CLOSE
    assert labelled["question_bootstrap"]["l10"]["ci_side"] == "passing"
    clear = label_redundancy(
        redundancy_verdict({"l10": -0.5}, max_abs_rho=0.8), {"l10": {"estimate": -0.5, "decision_ci99": [-0.6, -0.4]}}
    )
    assert not clear["killed"] and clear["call"] == qboot.TOO_CLOSE
    kill = label_redundancy(
        redundancy_verdict({"l10": -0.9}, max_abs_rho=0.8), {"l10": {"estimate": -0.9, "decision_ci99": [-0.95, -0.85]}}
    )
    assert kill["killed"] and kill["call"] == qboot.DECIDED


def _discrimination(values, intervals, **thresholds):
    return label_discrimination(discrimination_verdict(np.asarray(values), **thresholds), intervals)


def test_std_gate_point_and_ci_disagree_is_too_close() -> None:
    # std 0.0158 < 0.05 kills on the point; a CI wholly above 0.05 disagrees with it.
    values = np.linspace(0.01, 0.06, 12)
    std = float(values.std(ddof=1))
    ratio = {"estimate": 6.0, "decision_ci99": [5.0, 7.0]}
    wrong = _discrimination(
        values,
        {"js_std": {"estimate": std, "decision_ci99": [0.06, 0.09]}, "max_min_ratio": ratio},
        min_std=0.05,
        min_ratio=3.0,
    )
    assert wrong["killed"] and wrong["question_bootstrap"]["js_std"]["ci_side"] == "passing"
    assert wrong["question_bootstrap"]["js_std"]["call"] == qboot.TOO_CLOSE and wrong["call"] == qboot.TOO_CLOSE
    assert f"std {std:.4g}, 95% CI undefined" in wrong["notes"][-1]  # point and intervals printed
    assert "99% decision CI [0.06, 0.09] vs 0.05" in wrong["notes"][-1]
    right = _discrimination(
        values,
        {"js_std": {"estimate": std, "decision_ci99": [0.012, 0.02]}, "max_min_ratio": ratio},
        min_std=0.05,
        min_ratio=3.0,
    )
    assert right["call"] == qboot.DECIDED and right["question_bootstrap"]["js_std"]["ci_side"] == "failing"


def test_ratio_gate_point_and_ci_disagree_is_too_close() -> None:
    values = np.linspace(0.02, 0.05, 12)  # max/min 2.5 < 3 kills; std passes at min_std 0.001
    std = {"estimate": float(values.std(ddof=1)), "decision_ci99": [0.005, 0.02]}
    wrong = _discrimination(
        values,
        {"js_std": std, "max_min_ratio": {"estimate": 2.5, "decision_ci99": [3.2, 4.0]}},
        min_std=0.001,
        min_ratio=3.0,
    )
    assert wrong["killed"] and wrong["call"] == qboot.TOO_CLOSE
    assert wrong["question_bootstrap"]["max_min_ratio"]["ci_side"] == "passing"
    # A passing verdict whose ratio CI lies wholly on the failing side is not decided either.
    passing = np.linspace(0.01, 0.05, 12)  # max/min 5
    odd = _discrimination(
        passing,
        {"js_std": std, "max_min_ratio": {"estimate": 5.0, "decision_ci99": [1.5, 2.5]}},
        min_std=0.001,
        min_ratio=3.0,
    )
    assert not odd["killed"] and odd["call"] == qboot.TOO_CLOSE


def test_redundancy_gate_point_and_ci_disagree_is_too_close() -> None:
    # |ρ| 0.85 > 0.8 kills on the point; its CI lies wholly inside ±0.8.
    verdict = label_redundancy(
        redundancy_verdict({"l20": -0.85}, max_abs_rho=0.8),
        {"l20": {"estimate": -0.85, "decision_ci99": [-0.75, -0.6]}},
    )
    assert verdict["killed"] and verdict["call"] == qboot.TOO_CLOSE
    assert verdict["question_bootstrap"]["l20"]["ci_side"] == "passing"
    assert any("l20 ρ -0.85, 95% CI undefined" in n and "decision CI [-0.75, -0.6]" in n for n in verdict["notes"])


def test_overall_call_checks_the_side_itself() -> None:
    from persona_assets.analysis.kill_criteria import overall_call

    # A call marked decided whose CI lies on the passing side cannot decide a kill.
    calls = {"js_std": {"call": qboot.DECIDED, "ci_side": "passing"}}
    assert overall_call(True, calls, {"js_std": True}) == qboot.TOO_CLOSE
    assert (
        overall_call(True, {"js_std": {"call": qboot.DECIDED, "ci_side": "failing"}}, {"js_std": True}) == qboot.DECIDED
    )
    assert (
        overall_call(False, {"js_std": {"call": qboot.DECIDED, "ci_side": "failing"}}, {"js_std": False})
        == qboot.TOO_CLOSE
    )
    assert overall_call(False, {}, {}) == qboot.TOO_CLOSE


def test_a_95_percent_ci_on_the_side_does_not_decide_when_the_decision_ci_straddles() -> None:
    # std 0.0386 < 0.05 kills; its 95% CI lies below 0.05, its 99% decision CI reaches over it.
    values = np.linspace(0.02, 0.14, 12)
    std = float(values.std(ddof=1))
    ci95 = [0.03, 0.048]
    decision = intervals_mod.widen(ci95, std, "log", intervals_mod.decision_factor(20))
    assert decision[0] < ci95[0] and decision[1] > 0.05
    ratio = {"estimate": 7.0, "ci95": [5.0, 9.0], "decision_ci99": [4.5, 10.0]}
    verdict = _discrimination(
        values,
        {"js_std": {"estimate": std, "ci95": ci95, "decision_ci99": decision}, "max_min_ratio": ratio},
        min_std=0.05,
        min_ratio=3.0,
    )
    assert verdict["killed"] and verdict["call"] == qboot.TOO_CLOSE
    assert verdict["question_bootstrap"]["js_std"]["ci_side"] == "straddles"
    # The same 95% CI, decided from itself, would have been 'decided': the wider interval is what changed the call.
    assert qboot.threshold_call(ci95, 0.05, estimate=std) == qboot.DECIDED
    # ρ: a 95% CI wholly beyond 0.8 whose decision CI reaches inside: a kill too close to call.
    rho_ci = [-0.93, -0.81]
    rho_decision = intervals_mod.widen(rho_ci, -0.88, "Fisher z", intervals_mod.decision_factor(20))
    assert rho_decision[1] > -0.8
    redundancy = label_redundancy(
        redundancy_verdict({"l": -0.88}, max_abs_rho=0.8),
        {"l": {"estimate": -0.88, "ci95": rho_ci, "decision_ci99": rho_decision}},
    )
    assert redundancy["killed"] and redundancy["call"] == qboot.TOO_CLOSE


def test_widen_known_answers() -> None:
    t95, t99 = stats.t.ppf(0.975, 19), stats.t.ppf(0.995, 19)
    assert intervals_mod.decision_factor(20) == pytest.approx(t99 / t95)
    # On the log scale each half grows by the factor about the centre.
    lo, hi = intervals_mod.widen([1.0, 4.0], 2.0, "log", 2.0)
    assert lo == pytest.approx(0.5) and hi == pytest.approx(8.0)
    rlo, rhi = intervals_mod.widen([0.2, 0.6], 0.4, "Fisher z", 1.5)
    z = np.arctanh([0.2, 0.4, 0.6])
    assert rlo == pytest.approx(np.tanh(z[1] - 1.5 * (z[1] - z[0])))
    assert rhi == pytest.approx(np.tanh(z[1] + 1.5 * (z[2] - z[1])))
    assert (
        intervals_mod.widen(None, 1.0, "log", 2.0) is None
        and intervals_mod.widen([1.0, 2.0], 1.5, "log", math.inf) is None
    )


@settings(max_examples=40, deadline=None)
@given(st.floats(0.01, 1.0), st.floats(0.01, 1.0), st.floats(-1.0, 1.0), st.integers(3, 60))
def test_the_decision_interval_contains_the_95_percent_one(a: float, b: float, shift: float, n_q: int) -> None:
    centre = math.exp(shift)
    ci = [centre * math.exp(-a), centre * math.exp(b)]
    lo, hi = intervals_mod.widen(ci, centre, "log", intervals_mod.decision_factor(n_q))
    assert lo <= ci[0] * (1 + 1e-12) and hi >= ci[1] * (1 - 1e-12)


def test_bootstrap_intervals_carry_a_decision_interval() -> None:
    rng = np.random.default_rng(8)
    values = rng.gamma(3.0, 0.01, size=(10, 20))
    qb = qboot.question_bootstrap(_table(values), "js", n_boot=200, seed=0)
    for entry in (
        qboot.discrimination_intervals(qb)["js_std"],
        qboot.spearman_intervals(qb, {"l": values.mean(axis=1) + rng.normal(scale=0.01, size=10)})["l"],
    ):
        lo, hi = entry["ci95"]
        dlo, dhi = entry["decision_ci99"]
        assert dlo < lo < hi < dhi


def test_pair_ci_is_the_t_interval_on_the_log_scale() -> None:
    rng = np.random.default_rng(9)
    values = rng.lognormal(mean=-3.0, sigma=0.6, size=(6, 20))
    qb = qboot.question_bootstrap(_table(values), "js", n_boot=300, seed=1)
    multiplier = qboot.t_multiplier(20)
    for row in qboot.pair_intervals(qb):
        v, se = row["js"], row["se"]
        lo, hi = row["ci95"]
        assert lo == pytest.approx(v * math.exp(-multiplier * se / v))
        assert hi == pytest.approx(v * math.exp(multiplier * se / v))
        assert lo * hi == pytest.approx(v * v)  # symmetric about the value on the log scale


def test_jackknife_bias_correction_known_answer() -> None:
    # The plug-in variance (ddof 0) is biased by −σ²/n; Quenouille's correction gives the unbiased (ddof 1) one.
    x = np.random.default_rng(10).normal(size=15)
    loo = np.array([np.delete(x, j).var() for j in range(x.size)])
    assert intervals_mod.jackknife_bias_corrected(x.var(), loo) == pytest.approx(x.var(ddof=1))
    # A mean is unbiased: the correction leaves it where it is.
    means = np.array([np.delete(x, j).mean() for j in range(x.size)])
    assert intervals_mod.jackknife_bias_corrected(x.mean(), means) == pytest.approx(x.mean())


def test_leave_one_out_equals_dropping_the_question() -> None:
    rng = np.random.default_rng(11)
    values = rng.gamma(2.0, 0.02, size=(5, 8))
    values[1, 3] = np.nan  # a pair without question 3 averages over its other questions
    qb = qboot.question_bootstrap(_table(values), "js", n_boot=10, seed=0)
    for j in range(values.shape[1]):
        assert np.allclose(qb.leave_one_out[j], np.nanmean(np.delete(values, j, axis=1), axis=1))


def test_std_interval_is_bias_corrected_on_the_log_scale() -> None:
    rng = np.random.default_rng(12)
    values = rng.lognormal(mean=-3.0, sigma=0.5, size=(10, 20)) * np.linspace(1, 4, 10)[:, None]
    qb = qboot.question_bootstrap(_table(values), "js", n_boot=400, seed=2)
    std = qboot.discrimination_intervals(qb)["js_std"]
    log_point = math.log(values.mean(axis=1).std(ddof=1))
    loo = np.log([np.delete(values, j, axis=1).mean(axis=1).std(ddof=1) for j in range(20)])
    corrected = log_point - 19 * (loo.mean() - log_point)
    half = stats.t.ppf(0.975, 19) * np.log(qb.draws.std(axis=1, ddof=1)).std(ddof=1)
    assert std["bias_corrected_estimate"] == pytest.approx(math.exp(corrected))
    assert std["ci95"] == pytest.approx([math.exp(corrected - half), math.exp(corrected + half)])
    assert corrected < log_point  # question noise inflates the std; the correction takes it back down
    dlo, dhi = std["decision_ci99"]
    assert dlo < std["ci95"][0] and dhi > std["ci95"][1]


def test_liberal_intervals_carry_their_measured_miss_rates() -> None:
    for name, (low, high) in intervals_mod.MEASURED_MISS_RATES.items():
        label = intervals_mod.calibration_label(name)
        assert label["measured_miss_rate"] == [low, high]
        assert label["holds_95"] == (high <= intervals_mod.GOAL_MISS_RATE)
        short = intervals_mod.short_label(name)
        assert (short == "") == label["holds_95"]
        if not label["holds_95"]:
            assert f"{high:.1%}" in short and "liberal" in short and "liberal" in label["label"]
    assert not intervals_mod.calibration_label("coefficient_of_variation")["holds_95"]
    # A kill-gate note prints the liberal label next to the 95% CI it belongs to.
    verdict = _discrimination(
        np.linspace(0.02, 0.05, 12),
        {
            "js_std": {"estimate": 0.01, "ci95": [0.008, 0.012], "decision_ci99": [0.007, 0.013]},
            "max_min_ratio": {"estimate": 2.5, "ci95": [2.2, 2.8], "decision_ci99": [2.0, 2.9]},
        },
        min_std=0.05,
        min_ratio=3.0,
    )
    ratio_label = intervals_mod.short_label("max_min_ratio")
    assert ratio_label and f"95% CI [2.2, 2.8]{ratio_label}, 99% decision CI [2, 2.9]" in verdict["notes"][-1]
