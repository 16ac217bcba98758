"""Pair JS against the within-persona level on constructed per-question tables: the ratio and share
arithmetic, the call against question-level uncertainty cross-checked with a direct resampling, the
properties that must hold for any data, and the verdict evidence (never a kill)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from persona_assets.analysis.kill_criteria import discrimination_verdict
from persona_assets.analysis.persona_baseline import (
    EVIDENCE_LABEL,
    NOT_MEASURED,
    add_to_discrimination,
    baseline_comparison,
    not_measured,
    read_first_line,
)
from persona_assets.stats.question_bootstrap import t_multiplier


def _tables(pair_values: dict, within_values: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-question tables from {(a, b): [per question]} and {persona: [per question]}."""
    pairs = pd.DataFrame(
        [
            {"persona_a": a, "persona_b": b, "question_index": q, "js_sym": v}
            for (a, b), values in pair_values.items()
            for q, v in enumerate(values)
        ]
    )
    within = pd.DataFrame(
        [
            {"persona": p, "question_index": q, "js": v}
            for p, values in within_values.items()
            for q, v in enumerate(values)
        ]
    )
    return pairs, within


# a, b, c: b and c reworded barely move; pair (a, b) far above, (b, c) clearly below the level of b and c.
PAIRS = {
    ("a", "b"): [0.30, 0.32, 0.31, 0.29],
    ("a", "c"): [0.10, 0.30, 0.05, 0.35],  # noisy over questions: within the uncertainty
    ("b", "c"): [0.010, 0.012, 0.011, 0.009],
}
WITHIN = {"a": [0.10, 0.12, 0.11, 0.09], "b": [0.05, 0.06, 0.05, 0.06], "c": [0.04, 0.05, 0.04, 0.05]}


def test_ratio_level_and_share_on_constructed_data():
    pairs, within = _tables(PAIRS, WITHIN)
    out = baseline_comparison(pairs, within, n_boot=2000, seed=0)
    by_pair = {(r["persona_a"], r["persona_b"]): r for r in out["pairs"]}
    means = {k: float(np.mean(v)) for k, v in WITHIN.items()}
    for (a, b), values in PAIRS.items():
        row = by_pair[(a, b)]
        level = (means[a] + means[b]) / 2
        assert row["within_level"] == pytest.approx(level, abs=1e-15)
        assert row["ratio"] == pytest.approx(np.mean(values) / level, rel=1e-12)
    assert by_pair[("a", "b")]["exceeds_within"] and not by_pair[("a", "b")]["below_within"]
    assert by_pair[("b", "c")]["below_within"] and not by_pair[("b", "c")]["exceeds_within"]
    assert not by_pair[("a", "c")]["exceeds_within"] and not by_pair[("a", "c")]["below_within"]
    assert (out["n_pairs"], out["n_exceeding"], out["n_below"]) == (3, 1, 1)
    assert out["share_exceeding"] == pytest.approx(1 / 3)
    ratios = sorted(r["ratio"] for r in out["pairs"])
    assert (out["ratio_min"], out["ratio_median"], out["ratio_max"]) == pytest.approx(tuple(ratios))
    assert [p["persona"] for p in out["personas"]] == ["a", "b", "c"]
    assert out["within_js_min"] == pytest.approx(means["c"]) and out["within_js_max"] == pytest.approx(means["a"])
    line = out["read_first"]
    assert "1/3 pairs exceed it beyond question-level uncertainty (1 below it)" in line
    assert f"median {out['ratio_median']:.3g}×" in line


def test_the_call_uses_one_question_draw_for_pairs_and_personas_cross_checked_directly():
    """The SE of JS − level from an independent resampling with the same draws (the bootstrap's own rng use)."""
    pairs, within = _tables(PAIRS, WITHIN)
    n_boot, seed, n_q = 500, 3, 4
    out = baseline_comparison(pairs, within, n_boot=n_boot, seed=seed)
    draws = np.random.default_rng(seed).integers(0, n_q, size=(n_boot, n_q))
    for row in out["pairs"]:
        a, b = row["persona_a"], row["persona_b"]
        pair = np.array(PAIRS[(a, b)])[draws].mean(axis=1)
        level = (np.array(WITHIN[a])[draws].mean(axis=1) + np.array(WITHIN[b])[draws].mean(axis=1)) / 2
        se = float((pair - level).std(ddof=1))
        assert row["difference_se"] == pytest.approx(se, rel=1e-9)
        margin = t_multiplier(n_q) * se
        assert row["exceeds_within"] == (row["difference"] > margin)
        assert row["below_within"] == (-row["difference"] > margin)


def test_personas_without_paraphrases_leave_their_pairs_out():
    pairs, within = _tables(PAIRS, {k: v for k, v in WITHIN.items() if k != "c"})
    out = baseline_comparison(pairs, within, n_boot=200, seed=0)
    assert [(r["persona_a"], r["persona_b"]) for r in out["pairs"]] == [("a", "b")]
    assert out["n_personas"] == 2


def test_one_question_calls_no_pair_and_says_why():
    pairs, within = _tables({k: v[:1] for k, v in PAIRS.items()}, {k: v[:1] for k, v in WITHIN.items()})
    out = baseline_comparison(pairs, within, n_boot=200, seed=0)
    assert out["share_exceeding"] is None and out["n_exceeding"] is None
    assert "one question" in out["note"] and out["note"] in out["read_first"]
    assert all(r["ratio"] is not None for r in out["pairs"])


def test_a_zero_level_gives_no_ratio_and_is_counted():
    pairs, within = _tables({("a", "b"): [0.2, 0.21, 0.2, 0.21]}, {"a": [0.0] * 4, "b": [0.0] * 4})
    out = baseline_comparison(pairs, within, n_boot=200, seed=0)
    assert out["pairs"][0]["ratio"] is None and out["n_pairs_with_zero_level"] == 1
    assert out["ratio_median"] is None and out["pairs"][0]["exceeds_within"]


def test_no_within_values_is_not_measured():
    pairs, within = _tables(PAIRS, {})
    out = baseline_comparison(pairs, within.reindex(columns=["persona", "question_index", "js"]), n_boot=10, seed=0)
    assert out == not_measured("no persona has paraphrases")
    assert out["read_first"].startswith(NOT_MEASURED) and read_first_line(out) == out["read_first"]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(0.01, 0.6), min_size=12, max_size=12),
    st.lists(st.floats(0.001, 0.3), min_size=12, max_size=12),
    st.floats(0.1, 1.0),
)
def test_properties_scale_invariance_and_consistency(pair_flat, within_flat, scale):
    """Scaling every value by c > 0 changes no ratio and no call; a pair above the level has ratio > 1, below < 1."""
    names = [("a", "b"), ("a", "c"), ("b", "c")]
    pair_values = {p: pair_flat[4 * k : 4 * k + 4] for k, p in enumerate(names)}
    within_values = {p: within_flat[4 * k : 4 * k + 4] for k, p in enumerate("abc")}
    out = baseline_comparison(*_tables(pair_values, within_values), n_boot=200, seed=1)
    scaled = baseline_comparison(
        *_tables(
            {k: [scale * v for v in vs] for k, vs in pair_values.items()},
            {k: [scale * v for v in vs] for k, vs in within_values.items()},
        ),
        n_boot=200,
        seed=1,
    )
    for row, other in zip(out["pairs"], scaled["pairs"]):
        assert other["ratio"] == pytest.approx(row["ratio"], rel=1e-9)
        assert row["exceeds_within"] <= (row["ratio"] > 1) and row["below_within"] <= (row["ratio"] < 1)
        assert not (row["exceeds_within"] and row["below_within"])
        margin = t_multiplier(4) * row["difference_se"]
        if abs(abs(row["difference"]) - margin) > 1e-9 * max(abs(row["difference"]), margin, 1e-12):  # not a tie
            assert (other["exceeds_within"], other["below_within"]) == (row["exceeds_within"], row["below_within"])
    assert 0 <= out["share_exceeding"] <= 1
    assert out["share_exceeding"] == pytest.approx(sum(r["exceeds_within"] for r in out["pairs"]) / 3)


def test_the_baseline_is_evidence_of_the_discrimination_verdict_never_a_kill():
    pairs, within = _tables(PAIRS, WITHIN)
    baseline = baseline_comparison(pairs, within, n_boot=200, seed=0)
    js = np.array([np.mean(v) for v in PAIRS.values()])
    for thresholds in ({"min_std": 0.0, "min_ratio": 1.0}, {"min_std": 0.5, "min_ratio": 100.0}):
        plain = discrimination_verdict(js, **thresholds)
        verdict = add_to_discrimination(discrimination_verdict(js, **thresholds), baseline, absent="unused")
        assert verdict["killed"] == plain["killed"] and verdict["rule"] == plain["rule"]
        evidence = verdict["evidence"]["within_persona_baseline"]
        assert evidence["measured"] and evidence["n_exceeding"] == baseline["n_exceeding"]
        assert verdict["notes"][-1] == f"{EVIDENCE_LABEL}: {baseline['read_first']}"
    absent = add_to_discrimination(
        discrimination_verdict(js, min_std=0.0, min_ratio=1.0), None, absent="no paraphrase data"
    )
    assert absent["evidence"]["within_persona_baseline"] == {"measured": False, "reason": "no paraphrase data"}
    assert absent["notes"][-1] == f"{EVIDENCE_LABEL}: not measured — no paraphrase data"
    skipped = add_to_discrimination(
        discrimination_verdict(js, min_std=0.0, min_ratio=1.0), not_measured("max_paraphrases is 0"), absent="x"
    )
    assert skipped["evidence"]["within_persona_baseline"]["reason"] == "max_paraphrases is 0"


def test_one_resample_or_one_persona_calls_nothing_and_says_why():
    pairs, within = _tables(PAIRS, WITHIN)
    one = baseline_comparison(pairs, within, n_boot=1, seed=0)
    assert one["share_exceeding"] is None and "one bootstrap resample" in one["note"]
    alone = baseline_comparison(pairs, within[within["persona"] == "a"], n_boot=50, seed=0)
    assert alone["pairs"] == [] and alone["share_exceeding"] is None and "no pair to compare" in alone["read_first"]
