"""The `method` record of divergence_matrices: what arithmetic produced the numbers, per scoring path.

Two scoring paths exist and their dtypes differ, so the record must say which one ran:
- reference (CpuLLM, and any LLMResource that scores one response at a time): the forward in
  the resource's dtype, the LM head's float32 logits renormalised (log-softmax) and turned into JS
  and KL in float64 (`persona_assets.measure.divergence.pair_divergences`);
- fused (GpuLLM): the forward in the resource's dtype (bfloat16 by default), the LM head GEMM with
  float32 output, then per-token JS/KL terms in float32, summed in float32 within a vocabulary
  block and in float64 across blocks, log-sum-exp likewise (`resources.fast_divergence`; Triton
  kernels on CUDA).

No dagster import.
"""

from __future__ import annotations

from typing import Any

FUSED_RESOURCES = frozenset({"GpuLLM"})


def scoring_path(resource: str) -> str:
    """'fused' for the resources that score through resources.fast_engine, else 'reference'."""
    return "fused" if resource in FUSED_RESOURCES else "reference"


def method_record(
    device: str,
    dtype: str,
    *,
    resource: str,
    averaging: str,
    max_scorers_per_pass: int,
    divergence_code_version: Any,
    scoring_rule: str = "generated",
    generation_dtype: str | None = None,
    not_round_tripping: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The `method` dict recorded with the divergence matrices.

    Args:
        device: where the forward ran (e.g. ``"cuda:0"``, ``"cpu"``), as ``LLMResource.describe()``.
        dtype: the teacher-forcing forward's dtype (``"bfloat16"``, ``"float32"``, ...): the resource's
            scoring dtype (``describe()["scoring_dtype"]``).
        generation_dtype: the dtype the responses were generated in (``describe()["dtype"]``);
            default ``dtype``.
        resource: the LLM resource class name (``describe()["resource"]``): picks the scoring path.
        scoring_rule: which positions were scored (`persona_assets.measure.scoring_rule`).
        not_round_tripping: under ``original_template``, the responses whose re-tokenised ids are not
            their generated ids (`persona_assets.measure.response_jobs.not_round_tripping`).
    """
    path = scoring_path(resource)
    if path == "fused":
        numerics = {
            "forward_dtype": dtype,
            "lm_head_output_dtype": "float32",
            "log_softmax_dtype": "none (log-sum-exp per row: float32 within a vocabulary block, float64 across blocks)",
            "divergence_dtype": "float32 per-token terms, summed in float32 within a vocabulary block and float64 "
            "across blocks",
            "divergence_implementation": "resources.fast_divergence (Triton kernels on CUDA, the same arithmetic in "
            "PyTorch elsewhere)",
        }
    else:
        numerics = {
            "forward_dtype": dtype,
            "lm_head_output_dtype": dtype,
            "log_softmax_dtype": "float64 (the float32 logits renormalised inside pair_divergences)",
            "divergence_dtype": "float64",
            "divergence_implementation": "persona_assets.measure.divergence.pair_divergences",
        }
    rule_record: dict[str, Any] = {}
    if scoring_rule != "generated":
        listed = list(not_round_tripping or [])
        rule_record = {"responses_not_round_tripping": len(listed), "not_round_tripping": listed}
    return {
        "averaging": averaging,
        "device": device,
        "generation_dtype": generation_dtype or dtype,
        "scoring_path": path,
        **numerics,
        "units": "nats",
        "scoring_rule": scoring_rule,
        "token_mean": (
            "mean over response positions (end-of-turn token included when emitted)"
            if scoring_rule == "generated"
            else "mean over the positions after the prompt of the decoded response re-rendered through the chat "
            "template and re-tokenised (closing tokens appended), as the earlier study"
        ),
        **rule_record,
        "kl_matrix": "[i][j] = KL(P_i || P_j)",
        "kl_signed_asym_matrix": "[i][j] = KL(i->j) - KL(j->i)",
        "max_scorers_per_pass": max_scorers_per_pass,
        "divergence_code_version": divergence_code_version,
        "exact": "exact JS and KL over the full vocabulary (no approximation)",
    }
