"""Invariants of `layer_divergences` and `divergence_profiles` (blocking, ERROR): a failure fails the run.

- the lens at the last layer reproduces the divergence step's output JS (a separate computation) per
  response and pair, to the float rounding of the scoring dtype;
- every lens value is finite, 0 ≤ JS ≤ ln 2, KL ≥ 0;
- position buckets give back each response's mean, weighted by their token counts;
- the vocabulary terms of Σ_t KL sum to Σ_t KL (the whole vector, before the top k are kept).
"""

from __future__ import annotations

import dagster as dg
import numpy as np

from persona_assets.assets.check_results import TOLERANCE, error_result
from persona_assets.constants import LN2

LAYER_DIVERGENCES = dg.AssetKey("layer_divergences")
DIVERGENCE_PROFILES = dg.AssetKey("divergence_profiles")
# Σ_v terms (float64) vs Σ_t KL: float64 on the CPU; on CUDA the KL comes from float32 vocabulary terms (~1e-6).
TERM_SUM_RELATIVE = 1e-5


@dg.asset_check(
    asset=LAYER_DIVERGENCES,
    blocking=True,
    description="The lens at the last layer equals the divergence step's output JS, per response and pair, to float "
    "rounding.",
)
def lens_last_layer_is_output(layer_divergences: dict) -> dg.AssetCheckResult:
    gap = layer_divergences["last_layer_vs_divergence_step"]
    tolerance = gap["tolerance_relative"]
    complete = gap["n_compared"] == gap["n_expected"] and gap["n_expected"] > 0
    relative = gap["max_relative_gap"]
    passed = complete and relative is not None and (relative <= tolerance or gap["max_abs_gap"] <= TOLERANCE)
    return error_result(
        passed,
        f"max relative gap {relative:.3g} over {gap['n_compared']} of {gap['n_expected']} (response, pair) values "
        f"(tolerance {tolerance:g} relative, {TOLERANCE:g} absolute)"
        if relative is not None
        else "nothing compared",
        max_relative_gap=relative,
        max_abs_gap=gap["max_abs_gap"],
        n_compared=gap["n_compared"],
        tolerance_relative=tolerance,
    )


@dg.asset_check(
    asset=LAYER_DIVERGENCES, blocking=True, description="Every lens matrix is finite, 0 ≤ JS ≤ ln 2 and KL ≥ 0."
)
def lens_finite_bounded(layer_divergences: dict) -> dg.AssetCheckResult:
    bad, low, high, kl_low = 0, np.inf, -np.inf, np.inf
    for matrices in layer_divergences["matrices"].values():
        js = np.array(matrices["js_matrix"], dtype=float)
        kl = np.array(matrices["kl_matrix"], dtype=float)
        bad += int((~np.isfinite(js)).sum() + (~np.isfinite(kl)).sum())
        if np.isfinite(js).all() and np.isfinite(kl).all():
            low, high, kl_low = min(low, js.min()), max(high, js.max()), min(kl_low, kl.min())
    passed = bad == 0 and low >= -TOLERANCE and high <= LN2 + TOLERANCE and kl_low >= -TOLERANCE
    return error_result(
        passed, "range of every layer's JS and KL", non_finite=bad, js_min=float(low), js_max=float(high)
    )


@dg.asset_check(
    asset=DIVERGENCE_PROFILES,
    blocking=True,
    description="Each response's position buckets, weighted by their token counts, give back its mean JS.",
)
def buckets_sum_to_response_mean(divergence_profiles: dict) -> dg.AssetCheckResult:
    gap = divergence_profiles["sum_checks"]["bucket_sum_max_gap"]
    return error_result(
        gap <= TOLERANCE, f"max |Σ n_b·JS_b / Σ n_b − response JS| = {gap:.3g}", max_gap=gap, tolerance=TOLERANCE
    )


@dg.asset_check(
    asset=DIVERGENCE_PROFILES,
    blocking=True,
    description="The vocabulary terms of KL summed over positions add up to the KL (each response, pair, direction).",
)
def kl_terms_sum_to_kl(divergence_profiles: dict) -> dg.AssetCheckResult:
    checks = divergence_profiles["sum_checks"]
    absolute, relative = checks["term_sum_max_gap"], checks["term_sum_max_relative_gap"]
    return error_result(
        relative <= TERM_SUM_RELATIVE or absolute <= TOLERANCE,
        f"max |Σ_v term − Σ_t KL| = {absolute:.3g} ({relative:.3g} relative)",
        max_gap=absolute,
        max_relative_gap=relative,
        tolerance_relative=TERM_SUM_RELATIVE,
    )


@dg.asset_check(
    asset=DIVERGENCE_PROFILES,
    blocking=True,
    description="Every bucket value is finite with 0 ≤ JS ≤ ln 2; every listed term and share is finite.",
)
def profiles_finite_bounded(divergence_profiles: dict) -> dg.AssetCheckResult:
    values = np.array([row["js"] for row in divergence_profiles["pairs"]], dtype=float)
    terms = np.array(
        [
            [row["term"], row["share"] if row["share"] is not None else np.nan]
            for row in divergence_profiles["vocabulary"]
        ],
        dtype=float,
    ).reshape(-1, 2)
    finite = bool(np.isfinite(values).all() and np.isfinite(terms).all())
    bounded = bool(values.size == 0 or (values.min() >= -TOLERANCE and values.max() <= LN2 + TOLERANCE))
    return error_result(
        finite and bounded and values.size > 0,
        f"{values.size} bucket values, {len(terms)} vocabulary rows",
        non_finite=int((~np.isfinite(values)).sum() + (~np.isfinite(terms)).sum()),
    )


profile_checks = [
    lens_last_layer_is_output,
    lens_finite_bounded,
    buckets_sum_to_response_mean,
    kl_terms_sum_to_kl,
    profiles_finite_bounded,
]
