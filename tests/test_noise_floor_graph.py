"""The run measures its own noise floor (same responses, other batch compositions) and the
kill gates and correlations report it; on the tiny model, CPU, float32."""

from __future__ import annotations

import math

import numpy as np
import pytest

import dagster as dg

from persona_assets.definitions import all_assets
from persona_assets.environment import storage_resources
from persona_assets.ui_metadata import rounded
from tests.run_results import materializations
from resources.llm import CpuLLM
from tests.test_graph import run_config

# float32 forward: padding changes the GEMM/attention shapes and so the order of the reductions;
# a logit then differs by a few float32 roundings (2^-24 ≈ 6e-8 relative each) accumulated over
# the tiny model's two layers, about 1e-6 relative at most, and JS/KL move by a similar relative
# amount (measured: ~5e-8 relative, ~1e-8 nats). 1e-5 (nats, and relative) leaves two orders of
# headroom and stays far below the pair JS values (> 1e-3 nats, asserted in test_graph).
FLOAT32_BATCH_NOISE_BOUND = 1e-5

# kill_gate_verdicts reads the within-persona baseline too.
ANALYSED = (
    "persona_cosine",
    "leakage_rates",
    "analysis_inputs",
    "leakage_correlations",
    "persona_baseline",
    "kill_gate_verdicts",
)


def _materialize(tiny_model_dir, tmp_path, keep, llm=None, **divergence_config):
    """Only the assets named in `keep` (no figures, no checks: the floor does not reach them)."""
    # No paraphrases: the floor does not reach the within-persona baseline (kill_gate_verdicts only needs the asset).
    ops = run_config(
        tmp_path,
        divergence_matrices={"config": divergence_config},
        persona_baseline={"config": {"max_paraphrases": 0}},
    ).ops
    return dg.materialize(
        [a for a in all_assets if any(k.path[0] in keep for k in a.keys)],
        resources={"llm": llm or CpuLLM(model=str(tiny_model_dir)), **storage_resources()},
        run_config=dg.RunConfig(ops={k: v for k, v in ops.items() if k in keep}),
    )


def _divergences_only(tiny_model_dir, tmp_path, **divergence_config):
    return _materialize(
        tiny_model_dir, tmp_path, ("eval_set", "generations", "divergence_matrices"), **divergence_config
    )


def test_run_records_a_small_noise_floor_and_the_verdicts_mention_it(tiny_model_dir, tmp_path):
    result = _materialize(tiny_model_dir, tmp_path, ("eval_set", "generations", "divergence_matrices", *ANALYSED))
    assert result.success

    floor = result.output_for_node("divergence_matrices", "divergence_matrices")["noise_floor"]
    assert floor["measured"] and floor["reference_composition"] == "run"
    assert set(floor["compositions"]) == {"run", "alone"}  # CPU: no packing, so no own_batch composition
    assert len(floor["samples"]) == 2 and all(s["n_scorers"] == 4 and s["n_pairs"] == 3 for s in floor["samples"])
    for key in ("js_abs_nats", "js_per_token_abs_nats", "kl_abs_nats"):
        assert math.isfinite(floor[key]) and 0 <= floor[key] < FLOAT32_BATCH_NOISE_BOUND, key
    assert floor["js_rel"] < FLOAT32_BATCH_NOISE_BOUND and floor["kl_rel"] < FLOAT32_BATCH_NOISE_BOUND
    stats = floor["by_composition"]["alone"]["js"]
    assert stats["per_token_abs_median"] <= stats["per_token_abs_max"] == floor["js_per_token_abs_nats"]

    metadata = materializations(result, "divergence_matrices")[0].metadata
    assert metadata["noise_floor_js_nats"].value == rounded(floor["js_abs_nats"])  # shown at 4 digits
    assert metadata["noise_floor"].value["samples"] == floor["samples"]

    verdicts = result.output_for_node("kill_gate_verdicts")
    evidence = verdicts["discrimination"]["evidence"]["noise_floor"]
    assert evidence["noise_floor_js_nats"] == floor["js_abs_nats"]
    assert evidence["n_pair_js_differences"] == 15  # 6 pairs
    # Recount from the matrix the verdicts read: every difference of two pair JS values below the floor.
    js = np.array(result.output_for_node("divergence_matrices", "divergence_matrices")["js_matrix"])
    pair_js = np.sort(js[np.triu_indices(4, k=1)])
    differences = np.abs(pair_js[:, None] - pair_js[None, :])[np.triu_indices(6, k=1)]
    assert evidence["n_pair_js_differences_below_floor"] == int((differences < floor["js_abs_nats"]).sum())
    assert evidence["n_pair_js_below_floor"] == int((pair_js < floor["js_abs_nats"]).sum())
    assert evidence["smallest_gap_between_pair_js"] == pytest.approx(np.diff(pair_js).min(), rel=1e-12)
    assert any("noise floor" in note for note in verdicts["discrimination"]["notes"])
    gate_metadata = result.asset_materializations_for_node("kill_gate_verdicts")[0].metadata
    assert gate_metadata["noise_floor_js_nats"].value == rounded(floor["js_abs_nats"])

    correlations = result.output_for_node("leakage_correlations")["noise_floor"]
    assert correlations["noise_floor_js_nats"] == floor["js_abs_nats"] and correlations["measured"]
    assert correlations["js_min"] > 0 and "not findings" in correlations["note"]


def test_floor_is_read_back_when_nothing_it_depends_on_changed_and_can_be_disabled(tiny_model_dir, tmp_path):
    first = _divergences_only(tiny_model_dir, tmp_path)
    assert materializations(first, "divergence_matrices")[0].metadata["noise_floor_from_cache"].value is False
    again = _divergences_only(tiny_model_dir, tmp_path)
    metadata = materializations(again, "divergence_matrices")[0].metadata
    assert metadata["responses_scored_now"].value == 0  # every divergence came from the cache
    assert metadata["noise_floor_from_cache"].value is True  # and the floor: nothing it depends on changed
    floor = again.output_for_node("divergence_matrices", "divergence_matrices")["noise_floor"]
    assert floor["measured"] and math.isfinite(floor["js_abs_nats"])
    assert floor == first.output_for_node("divergence_matrices", "divergence_matrices")["noise_floor"]

    # A torn entry is measured again, never trusted; a changed setting the floor depends on is a new entry.
    entries = sorted((tmp_path / "data" / "cache" / "noise_floor").glob("*.json"))
    assert len(entries) == 1
    entries[0].write_text('{"js_abs_nats": ')
    torn = _divergences_only(tiny_model_dir, tmp_path)
    assert materializations(torn, "divergence_matrices")[0].metadata["noise_floor_from_cache"].value is False
    assert (
        torn.output_for_node("divergence_matrices", "divergence_matrices")["noise_floor"]["by_composition"]
        == floor["by_composition"]
    )
    chunked = _divergences_only(tiny_model_dir, tmp_path, pair_chunk_size=1)
    assert materializations(chunked, "divergence_matrices")[0].metadata["noise_floor_from_cache"].value is False
    assert len(list((tmp_path / "data" / "cache" / "noise_floor").glob("*.json"))) == 2

    off = _divergences_only(tiny_model_dir, tmp_path, noise_floor_samples=0)
    record = off.output_for_node("divergence_matrices", "divergence_matrices")["noise_floor"]
    assert record["measured"] is False and record["js_abs_nats"] is None and "disabled" in record["note"]


def test_a_bfloat16_run_measures_its_scoring_precision_and_counts_it_against_findings(tiny_model_dir, tmp_path):
    keep = ("eval_set", "generations", "divergence_matrices", *ANALYSED)
    result = _materialize(tiny_model_dir, tmp_path, keep, llm=CpuLLM(model=str(tiny_model_dir), dtype="bfloat16"))
    assert result.success
    value = result.output_for_node("divergence_matrices", "divergence_matrices")
    scoring = value["noise_floor"]["precision"]["scoring"]
    assert scoring["measured"] and scoring["js_abs_nats"] > value["noise_floor"]["js_abs_nats"]
    assert value["method"]["forward_dtype"] == value["method"]["generation_dtype"] == "bfloat16"
    evidence = result.output_for_node("kill_gate_verdicts")["discrimination"]["evidence"]["noise_floor"]
    assert evidence["scoring_precision_js_nats"] == scoring["js_abs_nats"]
    assert any(u.startswith("numeric precision of scoring") for u in evidence["uncertainties"]["covered_elsewhere"])
    assert [u.split(":")[0] for u in evidence["uncertainties"]["not_covered"]] == ["numeric precision of generation"]
    js = np.array(value["js_matrix"])[np.triu_indices(4, k=1)]
    differences = np.abs(js[:, None] - js[None, :])[np.triu_indices(6, k=1)]
    assert evidence["n_pair_js_differences_below_scoring_precision"] == int(
        (differences < 2 * scoring["js_abs_nats"]).sum()
    )
    qb = result.output_for_node("leakage_correlations")["question_bootstrap"]["pair_own"]["pair_differences"]
    assert (
        qb["n_below_scoring_precision"] is not None
        and qb["n_findings"] <= qb["n_pair_differences"] - qb["n_below_scoring_precision"]
    )


def test_float32_scoring_of_bfloat16_responses_is_recorded_and_cached_apart(tiny_model_dir, tmp_path):
    keep = ("eval_set", "generations", "divergence_matrices")
    upcast = CpuLLM(model=str(tiny_model_dir), dtype="bfloat16", scoring_dtype="float32")
    first = _materialize(tiny_model_dir, tmp_path, keep, llm=CpuLLM(model=str(tiny_model_dir), dtype="bfloat16"))
    second = _materialize(tiny_model_dir, tmp_path, keep, llm=upcast)
    assert first.success and second.success
    bf16 = first.output_for_node("divergence_matrices", "divergence_matrices")
    fp32 = second.output_for_node("divergence_matrices", "divergence_matrices")
    assert fp32["method"]["forward_dtype"] == "float32" and fp32["method"]["generation_dtype"] == "bfloat16"
    assert fp32["noise_floor"]["precision"]["scoring"]["applies"] is False
    # The same responses (generation cached), scored anew in float32: other values, not cache hits.
    assert first.output_for_node("generations")["responses"] == second.output_for_node("generations")["responses"]
    assert materializations(second, "divergence_matrices")[0].metadata["responses_scored_now"].value > 0
    gap = np.abs(np.array(fp32["js_matrix"]) - np.array(bf16["js_matrix"])).max()
    assert gap > 0
    # For reading: how the pair values moved against the probe of two responses.
    print(
        f"pair JS moved up to {gap:.2e} nats; the probe bound is "
        f"{bf16['noise_floor']['precision']['scoring']['js_abs_nats']:.2e}"
    )
