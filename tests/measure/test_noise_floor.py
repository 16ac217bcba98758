"""The noise-floor comparison on hand-made scorings, and the floor set against pair JS values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from persona_assets.analysis import correlation_report as analyses
from persona_assets.analysis.earlier_results import inputs_from_legacy_dir
from persona_assets.measure.noise_floor import (
    difference_stats,
    floor_evidence,
    floor_nats,
    noise_floor_summary,
    not_measured,
    sample_positions,
)
from tests.analysis.test_correlation_report import _legacy_folder


def scoring(js, kl_ab=None, kl_ba=None) -> dict[str, np.ndarray]:
    js = np.asarray(js, dtype=float)
    return {
        "js": js,
        "kl_ab": js if kl_ab is None else np.asarray(kl_ab, dtype=float),
        "kl_ba": js if kl_ba is None else np.asarray(kl_ba, dtype=float),
    }


@pytest.mark.parametrize(
    ("n", "k", "expected"),
    [(10, 2, [0, 9]), (10, 3, [0, 4, 9]), (3, 5, [0, 1, 2]), (5, 1, [0]), (0, 2, []), (7, 0, [])],
)
def test_sample_positions_are_spread_and_deterministic(n, k, expected):
    assert sample_positions(n, k) == expected


def test_difference_stats_per_token_and_per_response():
    # Two responses: one pair x 2 tokens, then 2 pairs x 1 token.
    reference = [scoring([[0.10, 0.30]]), scoring([[0.20], [0.0]])]
    other = [scoring([[0.11, 0.30]]), scoring([[0.16], [0.0]])]
    stats = difference_stats(reference, other)["js"]
    # Per-token |Δ|: 0.01, 0, 0.04, 0 -> max 0.04, median 0.005.
    assert stats["per_token_abs_max"] == pytest.approx(0.04)
    assert stats["per_token_abs_median"] == pytest.approx(0.005)
    # Relative per token: 0.1, 0, 0.2 (the zero reference has no relative error) -> max 0.2, median 0.1.
    assert stats["per_token_rel_max"] == pytest.approx(0.2)
    assert stats["per_token_rel_median"] == pytest.approx(0.1)
    # Response means: pair 1 0.2 vs 0.205 (Δ 0.005), pair 2 0.2 vs 0.16 (Δ 0.04), pair 3 0 vs 0.
    assert stats["per_response_abs_max"] == pytest.approx(0.04)
    assert stats["per_response_abs_median"] == pytest.approx(0.005)
    assert stats["per_response_rel_max"] == pytest.approx(0.2)
    assert stats["per_response_rel_median"] == pytest.approx((0.025 + 0.2) / 2)


def test_identical_scorings_have_zero_floor_and_shapes_must_match():
    same = [scoring([[0.1, 0.2]])]
    stats = difference_stats(same, same)
    assert all(v == 0 for v in stats["kl_ab"].values())
    with pytest.raises(ValueError, match="shapes"):
        difference_stats(same, [scoring([[0.1]])])
    with pytest.raises(ValueError, match="reference scorings"):
        difference_stats(same, [])


def test_summary_takes_the_largest_difference_over_compositions():
    reference = [scoring([[0.10, 0.30]], kl_ab=[[1.0, 1.0]])]
    summary = noise_floor_summary(
        {
            "alone": difference_stats(reference, [scoring([[0.12, 0.30]], kl_ab=[[1.0, 1.2]])]),
            "own_batch": difference_stats(reference, [scoring([[0.10, 0.33]], kl_ab=[[1.0, 1.0]])]),
        },
        reference="run",
        compositions={"run": "r", "alone": "a", "own_batch": "o"},
        samples=[{"generator": "x"}],
    )
    assert summary["measured"] and floor_nats(summary) == pytest.approx(0.015)  # mean JS moved by 0.03 / 2
    assert summary["js_rel"] == pytest.approx(0.075)
    assert summary["kl_abs_nats"] == pytest.approx(0.1)
    assert summary["js_per_token_abs_nats"] == pytest.approx(0.03)
    assert set(summary["by_composition"]) == {"alone", "own_batch"}


def test_floor_evidence_counts_differences_and_values_below_the_floor():
    pair_js = np.array([0.1, 0.1005, 0.2, 0.0004])
    evidence = floor_evidence(pair_js, {"measured": True, "js_abs_nats": 0.001})
    assert evidence["smallest_gap_between_pair_js"] == pytest.approx(0.0005)
    assert evidence["n_pair_js_differences"] == 6
    assert evidence["n_pair_js_differences_below_floor"] == 1
    assert evidence["n_pair_js_below_floor"] == 1
    assert "not findings" in evidence["note"] and "1 of 6" in evidence["note"]

    unknown = floor_evidence(pair_js, not_measured("disabled here"))
    assert unknown["noise_floor_js_nats"] is None and unknown["n_pair_js_differences_below_floor"] is None
    assert unknown["note"] == "disabled here"
    assert unknown["smallest_gap_between_pair_js"] == pytest.approx(0.0005)


def test_reanalysis_of_imported_matrices_says_the_floor_is_unknown(tmp_path: Path):
    inputs = inputs_from_legacy_dir(_legacy_folder(tmp_path))
    correlations, _, _ = analyses.leakage_correlations(inputs, n_boot=20, seed=0)
    assert correlations["noise_floor"]["measured"] is False
    assert "unknown" in correlations["noise_floor"]["note"] and "imported" in correlations["noise_floor"]["note"]
    verdicts = analyses.kill_gate_verdicts(
        inputs, correlations, min_std=0.05, min_ratio=3.0, max_abs_rho=0.8, min_relative_question_spread=0.5
    )
    for verdict in verdicts["discrimination_by_averaging"].values():
        assert verdict["evidence"]["noise_floor"]["noise_floor_js_nats"] is None
        assert any("noise floor unknown" in note for note in verdict["notes"])
    assert verdicts["noise_floor"]["n_pair_js_differences_below_floor"] is None
