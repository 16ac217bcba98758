"""The logit-lens report: per-layer correlations with the output, cosine and leakage, and its headline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from persona_assets.analysis.depth_report import (
    SAME_ORDER_RHO,
    depth_headline,
    layer_report,
    profile_headline,
    profile_report,
)
from persona_assets.stats.correlate import correlate

NAMES = ["p0", "p1", "p2", "p3", "p4"]


def _symmetric(rng, n=5):
    m = rng.uniform(0.01, 0.6, size=(n, n))
    m = (m + m.T) / 2
    np.fill_diagonal(m, 0.0)
    return m


@pytest.fixture
def report():
    rng = np.random.default_rng(3)
    output = _symmetric(rng)
    shallow = _symmetric(rng)  # unrelated to the output
    deep = output * 0.5 + 0.001  # the output's order, another scale
    cosine = {"layer4": -deep, "layer2": _symmetric(rng)}
    rows = [(s, t, float(output[i, j])) for i, s in enumerate(NAMES) for j, t in enumerate(NAMES) if s != t]
    leakage = pd.DataFrame(rows, columns=["source", "target", "rate"])
    lens = {2: shallow, 4: deep, 6: output}
    return layer_report(lens, NAMES, cosine, leakage, n_boot=50, seed=0, n_perm=99), lens, leakage


def test_layers_against_output_cosine_and_leakage(report):
    result, lens, leakage = report
    assert result["layers"] == [2, 4, 6] and result["output_layer"] == 6
    by = result["by_layer"]
    assert by["layer6"]["js_vs_output"]["spearman_rho"] == pytest.approx(1.0)
    assert by["layer4"]["js_vs_output"]["spearman_rho"] == pytest.approx(1.0)
    assert result["first_layer_ordering_pairs_like_output"] == 4
    assert (
        by["layer4"]["js_vs_cosine"]["spearman_rho"] == pytest.approx(-1.0) and "mantel" in by["layer4"]["js_vs_cosine"]
    )
    assert "note" in by["layer6"]["js_vs_cosine"]  # no cosine at the output layer
    # Leakage: the same Spearman as a direct computation on the directed pairs, with the design-respecting tests.
    i = {n: k for k, n in enumerate(NAMES)}
    direct = correlate(
        [lens[2][i[s], i[t]] for s, t in zip(leakage["source"], leakage["target"])], leakage["rate"], n_boot=0
    )
    assert by["layer2"]["js_vs_leakage"]["spearman_rho"] == pytest.approx(direct.spearman_rho)
    assert by["layer2"]["js_vs_leakage"]["n"] == 20
    assert {"persona_permutation", "crossed_bootstrap"} <= set(by["layer4"]["cosine_vs_leakage"])
    line = depth_headline({"report": result})
    assert line.startswith("mean pair JS through depth L2 ") and f"ρ ≥ {SAME_ORDER_RHO}) from layer 4" in line
    # L4 and L6 order the directed pairs exactly like leakage: the shallowest of the two is named.
    assert "strongest ρ(lens JS, leakage) +1.00" in line and line.endswith("at L4")


def test_without_leakage_the_report_says_so():
    rng = np.random.default_rng(0)
    output = _symmetric(rng)
    empty = pd.DataFrame(columns=["source", "target", "rate"])
    result = layer_report({3: output}, NAMES, {}, empty, n_boot=10, seed=0, n_perm=9)
    assert not result["leakage"]["available"] and "js_vs_leakage" not in result["by_layer"]["layer3"]
    assert depth_headline({"report": result}).endswith("; no leakage data")


def test_profile_report_question_bootstrap():
    rows = [
        {"persona_a": "p0", "persona_b": "p1", "question_index": q, "bucket": b, "js": v, "n_positions": 4}
        for q, (x, y) in enumerate([(0.2, 0.1), (0.4, 0.1), (0.3, 0.1)])
        for b, v in (("1–4", x), ("5–16", y))
    ]
    result = profile_report(pd.DataFrame(rows), ["1–4", "5–16", "17+"], n_boot=200, seed=0)
    first = [r for r in result["pairs"] if r["bucket"] == "1–4"][0]
    assert first["js"] == pytest.approx(0.3) and first["n_positions"] == 12
    assert first["ci95"][0] < 0.3 < first["ci95"][1]
    second = [r for r in result["pairs"] if r["bucket"] == "5–16"][0]
    assert second["se"] == pytest.approx(0.0, abs=1e-12)  # the same value on every question
    assert result["by_bucket"]["17+"]["n_pairs"] == 0


def test_profile_headline_lists_the_buckets_in_position_order_whatever_the_key_order():
    """Read back from JSON the buckets come sorted as text ("17–64" before "1–4"); the line reads by position."""
    by_bucket = {
        label: {"n_pairs": 1, "pair_mean_js": js} for label, js in [("17–64", 0.3), ("1–4", 0.1), ("257+", 0.5)]
    }
    by_bucket["5–16"] = {"n_pairs": 1, "pair_mean_js": 0.2}
    by_bucket["65–256"] = {"n_pairs": 0, "note": "no response reaches this bucket"}
    line = profile_headline({"by_bucket": by_bucket, "extremes": {"most_divergent": ["a", "b"]}, "vocabulary": []})
    assert line == "mean pair JS by response position 1–4: 0.1, 5–16: 0.2, 17–64: 0.3, 257+: 0.5 nats"
