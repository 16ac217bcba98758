"""What the UI shows: matrices as tables, one-line headlines and verdicts, figure previews, the verdict on the run."""

from __future__ import annotations

import math

import dagster as dg
import numpy as np

from persona_assets.ui_metadata import NOTHING_EVALUATED, SETTINGS_TAG, VERDICT_TAG, matrix_table, rounded, verdict_line
from tests.run_results import materializations
from tests.test_graph import PERSONAS, materialize, run_config


def test_rounded_keeps_four_significant_digits_and_leaves_specials():
    assert rounded(0.123456789) == 0.1235 and rounded(1.23456789e-9) == 1.235e-9 and rounded(12345.678) == 12350.0
    assert rounded(None) is None and rounded(0.0) == 0.0 and rounded(float("inf")) == float("inf")
    assert math.isnan(rounded(float("nan"))) and rounded(3) == 3


def test_matrix_table_has_one_row_per_persona():
    table = matrix_table(["a", "persona"], [[0.0, 0.123456], [0.5, 0.0]])
    assert [c.name for c in table.schema.columns] == ["persona", "a", "persona (column)"]
    assert [r.data for r in table.records] == [
        {"persona": "a", "a": 0.0, "persona (column)": 0.1235},
        {"persona": "persona", "a": 0.5, "persona (column)": 0.0},
    ]


def test_verdict_line_names_what_fired():
    killed, passed = {"killed": True}, {"killed": False}
    line = verdict_line({"discrimination": killed, "redundancy": passed})
    assert line == "KILLED: discrimination (redundancy passed)"
    assert verdict_line({"discrimination": killed, "redundancy": killed}) == "KILLED: discrimination, redundancy"
    assert verdict_line({"discrimination": passed, "redundancy": passed}) == "passed: discrimination, redundancy"


def test_graph_shows_matrices_headlines_previews_and_tags_the_run_with_the_verdict(tiny_model_dir, tmp_path):
    # The strictest thresholds the config allows: both kill gates fire.
    strictest = {"min_js_std": math.log(2), "max_abs_js_cosine_rho": 0.0}
    config = run_config(tmp_path, kill_gate_verdicts={"config": strictest})
    with dg.instance_for_test() as instance:
        result = materialize(tiny_model_dir, config, instance=instance)
        assert result.success
        tags = instance.get_run_by_id(result.run_id).tags
        messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert sum("published:" in m for m in messages) == 1  # said once, though the store is torn down twice
    assert any(m.startswith("kill gates on this run: KILLED") for m in messages)  # a warning in the run log

    divergences = result.output_for_node("divergence_matrices", "divergence_matrices")
    metadata = materializations(result, "divergence_matrices")[0].metadata
    for name in ("js_matrix", "kl_matrix"):
        table = metadata[name].value
        assert [r.data["persona"] for r in table.records] == PERSONAS
        shown = np.array([[r.data[p] for p in PERSONAS] for r in table.records])
        np.testing.assert_allclose(shown, np.array(divergences[name]), rtol=5e-4)  # 4 significant digits
    js = np.array(divergences["js_matrix"])[np.triu_indices(4, k=1)]
    floor = divergences["noise_floor"]["js_abs_nats"]
    assert metadata["headline"].value == (
        f"4 personas: pair JS {rounded(js.min())}–{rounded(js.max())} nats (mean {rounded(js.mean())}); "
        f"{int((js > floor).sum())}/6 pairs above the noise floor {rounded(floor)} nats"
    )

    gate = result.asset_materializations_for_node("kill_gate_verdicts")[0].metadata
    assert gate["verdict"].value == "KILLED: discrimination, redundancy"
    assert tags[VERDICT_TAG] == "KILLED: discrimination, redundancy"  # on the run: runs list and run page
    assert SETTINGS_TAG not in tags
    # Every number a check shows has at most 4 significant digits (the evidence of the kill checks too).
    shown = [
        (e.check_name, k, m.value)
        for e in result.get_asset_check_evaluations()
        for k, m in e.metadata.items()
        if isinstance(m.value, float)
    ]
    assert {name for name, _, _ in shown} >= {"kill_discrimination", "js_bounded_zero_diagonal"}
    assert [(n, k, v) for n, k, v in shown if math.isfinite(v) and v != float(f"{v:.4g}")] == []

    figures = result.asset_materializations_for_node("figures")[0].metadata
    files = result.output_for_node("figures")["files"]
    assert figures["verdict"].value == gate["verdict"].value
    assert {k for k in figures if k.startswith("preview_")} == {f"preview_{stem}" for stem in files}
    assert all(figures[f"preview_{stem}"].value.startswith("![preview](data:image/png;base64,") for stem in files)
    assert isinstance(figures["figures_dir"], dg.PathMetadataValue)
    correlations = result.asset_materializations_for_node("leakage_correlations")[0].metadata
    assert correlations["headline"].value == "no leakage data: only JS vs cosine was computed"
    precheck = result.asset_materializations_for_node("cosine_precheck")[0].metadata
    assert precheck["headline"].value.startswith("no leakage data: only 0 directed pairs have leakage rates")
    generated = result.asset_materializations_for_node("generations")[0].metadata
    assert generated["empty_responses"].value == "none"
    assert generated["headline"].value.startswith("8 responses (8 generated now)")


def test_a_run_refused_on_its_settings_says_nothing_was_evaluated(tiny_model_dir, tmp_path):
    with dg.instance_for_test() as instance:
        bad = run_config(tmp_path, generations={"config": {"max_new_tokens": -1}})
        result = materialize(tiny_model_dir, bad, instance=instance)
        tags = instance.get_run_by_id(result.run_id).tags
    assert not result.success
    [failure] = result.get_step_failure_events()
    error = failure.step_failure_data.error
    assert failure.step_key == "eval_set"
    assert NOTHING_EVALUATED in "\n".join(e.message for e in (error, error.cause) if e is not None)
    assert tags[SETTINGS_TAG] == "refused: nothing evaluated" and VERDICT_TAG not in tags
