"""Invariants (blocking, ERROR) and kill criteria (non-blocking) as asset checks.

Tolerance: the divergence math runs in float64 on float32 log-probabilities. Rounding error of a
float64 sum over V ≤ 2^18 vocabulary terms of magnitude ≤ ~50 is below 1e-9, and the matrices
are symmetrised by construction, so 1e-9 separates real violations from rounding.
"""

import dagster as dg
import numpy as np

from persona_assets.assets.generations import generations
from persona_assets.assets.analysis import kill_gate_verdicts
from persona_assets.assets.availability import AVAILABLE
from persona_assets.assets.legacy import legacy_kill_gate_verdicts
from persona_assets.assets.persona_baseline import persona_baseline
from persona_assets.assets.token_profile_checks import profile_checks
from persona_assets.assets.check_results import TOLERANCE, error_result
from persona_assets.constants import LN2
from persona_assets.inputs.response_quality import response_quality
from persona_assets.ui_metadata import rounded_values

DIVERGENCE_MATRICES = dg.AssetKey("divergence_matrices")  # one of the three assets of its graph


def _matrix(value: dict, key: str) -> np.ndarray:
    # JSON stores non-finite numbers as null; they come back as NaN here.
    return np.array([[np.nan if v is None else v for v in row] for row in value[key]], dtype=float)


@dg.asset_check(asset=DIVERGENCE_MATRICES, blocking=True, description="Every matrix entry is finite.")
def divergences_finite(divergence_matrices: dict) -> dg.AssetCheckResult:
    bad = {key: int((~np.isfinite(_matrix(divergence_matrices, key))).sum()) for key in ("js_matrix", "kl_matrix")}
    return error_result(
        sum(bad.values()) == 0, "non-finite entries per matrix", **{f"non_finite_{k}": v for k, v in bad.items()}
    )


@dg.asset_check(asset=DIVERGENCE_MATRICES, blocking=True, description=f"JS is symmetric within {TOLERANCE}.")
def js_symmetric(divergence_matrices: dict) -> dg.AssetCheckResult:
    js = _matrix(divergence_matrices, "js_matrix")
    gap = float(np.nanmax(np.abs(js - js.T)))
    return error_result(gap <= TOLERANCE, "max |JS − JSᵀ|", max_asymmetry=gap, tolerance=TOLERANCE)


@dg.asset_check(asset=DIVERGENCE_MATRICES, blocking=True, description="0 ≤ JS ≤ ln 2 and the JS diagonal is 0.")
def js_bounded_zero_diagonal(divergence_matrices: dict) -> dg.AssetCheckResult:
    js = _matrix(divergence_matrices, "js_matrix")
    low, high, diagonal = float(np.nanmin(js)), float(np.nanmax(js)), float(np.nanmax(np.abs(np.diag(js))))
    passed = low >= -TOLERANCE and high <= LN2 + TOLERANCE and diagonal <= TOLERANCE
    return error_result(passed, "range and diagonal of JS", js_min=low, js_max=high, ln2=LN2, max_abs_diagonal=diagonal)


@dg.asset_check(asset=DIVERGENCE_MATRICES, blocking=True, description="KL ≥ 0 with a zero diagonal.")
def kl_nonnegative_zero_diagonal(divergence_matrices: dict) -> dg.AssetCheckResult:
    kl = _matrix(divergence_matrices, "kl_matrix")
    low, diagonal = float(np.nanmin(kl)), float(np.nanmax(np.abs(np.diag(kl))))
    return error_result(
        low >= -TOLERANCE and diagonal <= TOLERANCE, "min KL and diagonal", kl_min=low, max_abs_diagonal=diagonal
    )


@dg.asset_check(asset=generations, blocking=True, description="No response is empty (no tokens or blank text).")
def no_empty_responses(generations: dict) -> dg.AssetCheckResult:
    quality = response_quality(generations["responses"])
    empty = quality["empty"]
    share = quality["hit_max_new_tokens_share"]
    description = (
        f"{len(empty)} empty responses (no tokens or blank text), persona/question: "
        + ", ".join(empty[:20])
        + (f" and {len(empty) - 20} more" if len(empty) > 20 else "")
        if empty
        else "no empty responses"
    ) + f"; {share:.0%} stopped at max_new_tokens"
    return error_result(
        not empty,
        description,
        n_empty=len(empty),
        empty=", ".join(empty[:20]),
        hit_max_new_tokens=quality["hit_max_new_tokens"],
        hit_max_new_tokens_share=share,
    )


@dg.asset_check(
    asset=persona_baseline,
    blocking=True,
    description="Every within-persona and pair JS of the baseline is finite, in [0, ln 2] (passes when not measured).",
)
def persona_baseline_bounded(persona_baseline: dict) -> dg.AssetCheckResult:
    if not persona_baseline.get("measured"):
        return error_result(True, f"not measured: {persona_baseline.get('reason')}")
    values = np.array(
        [p["within_js"] for p in persona_baseline["personas"]] + [r["js"] for r in persona_baseline["pairs"]],
        dtype=float,
    )
    finite = bool(np.isfinite(values).all())
    low, high = (float(np.nanmin(values)), float(np.nanmax(values))) if values.size else (0.0, 0.0)
    passed = finite and low >= -TOLERANCE and high <= LN2 + TOLERANCE
    return error_result(
        passed, "range of the within-persona and pair JS", all_finite=finite, js_min=low, js_max=high, ln2=LN2
    )


def _kill_check(criterion: str, asset: dg.AssetsDefinition = kill_gate_verdicts) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset,
        name=f"kill_{criterion}",
        blocking=False,
        description=f"Pre-registered kill criterion '{criterion}': fails when the criterion says stop.",
    )
    def _check(kill_gate_verdicts: dict) -> dg.AssetCheckResult:
        if not kill_gate_verdicts.get(AVAILABLE, True):
            return dg.AssetCheckResult(
                passed=True,
                severity=dg.AssetCheckSeverity.WARN,
                description=f"not judged: {kill_gate_verdicts.get('note')}",
            )
        verdict = kill_gate_verdicts[criterion]
        evidence = {
            k: v for k, v in verdict["evidence"].items() if isinstance(v, (int, float, str, bool)) and v is not None
        }
        return dg.AssetCheckResult(
            passed=not verdict["killed"],
            severity=dg.AssetCheckSeverity.WARN,
            description=verdict["rule"] + ("; " + "; ".join(verdict["notes"]) if verdict["notes"] else ""),
            metadata=rounded_values(evidence),
        )

    return _check


invariant_checks = [
    divergences_finite,
    js_symmetric,
    js_bounded_zero_diagonal,
    kl_nonnegative_zero_diagonal,
    no_empty_responses,
    persona_baseline_bounded,
]
kill_checks = [_kill_check("discrimination"), _kill_check("redundancy")]
all_checks = invariant_checks + profile_checks + kill_checks
# The same kill criteria on re-analysed earlier results (legacy_kill_gate_verdicts).
legacy_checks = [
    _kill_check("discrimination", legacy_kill_gate_verdicts),
    _kill_check("redundancy", legacy_kill_gate_verdicts),
]
