"""layer_divergences and divergence_profiles in the whole graph on the tiny model (with leakage), and re-use of
their cache."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from tests.test_graph import PERSONAS, materialize, run_config

PROFILE_CHECKS = (
    "lens_last_layer_is_output",
    "lens_finite_bounded",
    "buckets_sum_to_response_mean",
    "kl_terms_sum_to_kl",
    "profiles_finite_bounded",
)


def test_lens_and_profiles_in_the_graph(tiny_leakage_run):
    result, run_dir = tiny_leakage_run
    assert result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    for name in PROFILE_CHECKS:
        assert evaluations[name].passed, name

    lens = result.output_for_node("token_profiles", "layer_divergences")
    assert lens["layers"] == [1, 2] and lens["output_layer"] == 2
    output = np.array(result.output_for_node("divergence_matrices", "divergence_matrices")["js_matrix"])
    last = np.array(lens["matrices"]["layer2"]["js_matrix"])
    # The last layer's lens is the output: the same matrix as the divergence step's, to float rounding.
    np.testing.assert_allclose(last, output, rtol=1e-4, atol=1e-9)
    inner = np.array(lens["matrices"]["layer1"]["js_matrix"])
    assert inner.shape == (4, 4) and not np.allclose(inner, output)
    report = lens["report"]
    assert set(report["by_layer"]) == {"layer1", "layer2"}
    layer1 = report["by_layer"]["layer1"]
    assert "mantel" in layer1["js_vs_cosine"]
    assert layer1["js_vs_leakage"]["n"] == 12 and "persona_permutation" in layer1["js_vs_leakage"]
    assert "persona_permutation" in layer1["cosine_vs_leakage"]
    assert math.isclose(report["by_layer"]["layer2"]["js_vs_output"]["spearman_rho"], 1.0)

    profiles = result.output_for_node("token_profiles", "divergence_profiles")
    assert profiles["buckets"] == ["1–4", "5–16", "17–64", "65–256", "257+"]
    buckets = pd.DataFrame(profiles["pairs"])
    assert set(buckets["bucket"]) <= {"1–4", "5–16"}  # responses of ≤ 6 tokens
    assert len(buckets[buckets["bucket"] == "1–4"]) == 6
    vocabulary = pd.DataFrame(profiles["vocabulary"])
    assert set(vocabulary["direction"]) == {"A‖B", "B‖A"} and vocabulary["rank"].max() == profiles["top_k"]
    assert vocabulary["token"].map(lambda t: isinstance(t, str)).all()
    assert (vocabulary["share"] <= 1.0 + 1e-9).all()
    assert set(profiles["extremes"]["most_divergent"]) <= set(PERSONAS)
    outputs = run_dir / "data" / "outputs"
    assert json.loads((outputs / "layer_divergences.json").read_text())["layers"] == [1, 2]
    for name in (
        "layer_divergences_per_response.csv",
        "divergence_profiles_buckets.csv",
        "divergence_profiles_tokens.csv",
    ):
        assert len(pd.read_csv(outputs / name)) > 0, name
    figures = result.output_for_node("figures")["files"]
    assert {"lens_leakage_by_depth", "position_profile"} <= set(figures)


def test_a_rerun_reads_the_pass_from_the_cache(tiny_model_dir, tmp_path):
    first = materialize(tiny_model_dir, run_config(tmp_path))
    again = materialize(tiny_model_dir, run_config(tmp_path))
    assert first.success and again.success

    def metadata(result):
        (event,) = [
            e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "layer_divergences"
        ]
        return event.materialization.metadata

    assert metadata(first)["responses_scored_now"].value == len(PERSONAS) * 2
    assert metadata(again)["responses_scored_now"].value == 0
    assert metadata(again)["responses_from_cache"].value == len(PERSONAS) * 2
    values = [r.output_for_node("token_profiles", "layer_divergences")["matrices"] for r in (first, again)]
    assert values[0] == values[1]
