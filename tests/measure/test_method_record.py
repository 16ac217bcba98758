"""Labelling: the method record per scoring path, and the rise summary in depth order."""

from __future__ import annotations

from persona_assets.stats.pair_correlations import layer_depth, rise_summary
from persona_assets.measure.method_record import method_record, scoring_path


def test_rise_summary_takes_first_and_last_by_depth_not_by_order() -> None:
    by_layer = {"layer25": {"spearman_rho": 0.7}, "layer5": {"spearman_rho": 0.2}, "layer15": {"spearman_rho": 0.9}}
    out = rise_summary(by_layer)
    assert (out["first_layer"], out["last_layer"]) == ("layer5", "layer25")
    assert out["rises"] is True and out["spearman_first"] == 0.2 and out["spearman_last"] == 0.7
    # A layer with an undefined correlation is skipped, still in depth order.
    by_layer["layer25"]["spearman_rho"] = None
    assert rise_summary(by_layer)["last_layer"] == "layer15"
    assert layer_depth("layer10") == 10 and layer_depth("embeddings") == -1


def test_gpu_method_record_says_bf16_forward_and_float32_fused_terms() -> None:
    gpu = method_record(
        "cuda:0",
        "bfloat16",
        resource="GpuLLM",
        averaging="pair_own",
        max_scorers_per_pass=12,
        divergence_code_version=3,
    )
    assert gpu["scoring_path"] == "fused" and gpu["forward_dtype"] == "bfloat16"
    assert gpu["lm_head_output_dtype"] == "float32"
    assert gpu["divergence_dtype"].startswith("float32 per-token terms")
    assert "float64" not in gpu["log_softmax_dtype"].split(":")[0]
    cpu = method_record(
        "cpu", "float32", resource="CpuLLM", averaging="pair_own", max_scorers_per_pass=12, divergence_code_version=3
    )
    assert cpu["scoring_path"] == "reference"
    assert cpu["log_softmax_dtype"].startswith("float64") and cpu["divergence_dtype"] == "float64"
    assert scoring_path("LLMResource") == "reference"
    shared = {
        "averaging",
        "units",
        "token_mean",
        "kl_matrix",
        "kl_signed_asym_matrix",
        "max_scorers_per_pass",
        "divergence_code_version",
        "exact",
    }
    assert shared <= set(gpu) and shared <= set(cpu)
    assert gpu["scoring_rule"] == "generated" and "when emitted" in gpu["token_mean"]
    original = method_record(
        "cpu",
        "float32",
        resource="CpuLLM",
        averaging="all_responses",
        max_scorers_per_pass=12,
        divergence_code_version=3,
        scoring_rule="original_template",
    )
    assert original["scoring_rule"] == "original_template" and "closing tokens" in original["token_mean"]
