"""What numeric precision moves in a run's numbers, and whether the run measured it.

Two effects, kept apart because they differ in kind:
- scoring precision: the same responses teacher-forced in bfloat16 (or float16) instead of float32.
  Every reduced-precision run re-scores its noise-floor sample in float32 (the weights upcast in
  place, `resources.weight_upcast`) and records the largest change of a response-mean JS; a pair
  difference smaller than that is not a finding.
- generation precision: greedy responses generated in reduced precision are not the ones float32
  gives (a near-tie flips and every later token differs), so the pair values average over another
  sample of responses. A run cannot bound this without generating everything twice; it says so,
  and `benchmarks/precision.py` measures it.

float32 is the reference: a float32 run has neither effect to report.

No dagster import.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

REFERENCE = "float32"
PRECISION_KEY = "js_abs_nats"  # as in noise_floor.largest_differences, which fills the record

GENERATION_NOTE = (
    "greedy responses generated in {dtype} differ from float32's (a near-tie flips, every later token differs): "
    "the pair values average over another sample of responses. Not measured in the run (it needs a second "
    "generation); benchmarks/precision.py measures it (docs/precision.md). dtype: float32 removes it."
)


def scoring_precision(
    scoring_dtype: str,
    by_value: Mapping[str, Mapping[str, float | None]] | None = None,
    largest: Mapping[str, float | None] | None = None,
    *,
    reason: str = "",
    seconds: float | None = None,
) -> dict[str, Any]:
    """The scoring-precision record: run's dtype vs float32 on the same responses and compositions.

    Args:
        scoring_dtype: the dtype the run teacher-forced in.
        by_value: `noise_floor.difference_stats` of the float32 re-scoring against the run's, or None
            when it was not measured (then `reason` says why).
        largest: `noise_floor.largest_differences` of `by_value` (its headline numbers).
    """
    if scoring_dtype == REFERENCE:
        return {"applies": False, "measured": False, "note": "scored in float32, the reference precision"}
    if by_value is None:
        return {"applies": True, "measured": False, "run_dtype": scoring_dtype, "note": reason or "not measured"}
    if largest is None:
        raise ValueError("a measured scoring precision needs its largest differences (noise_floor.largest_differences)")
    return {
        "applies": True,
        "measured": True,
        "run_dtype": scoring_dtype,
        "reference_dtype": REFERENCE,
        **largest,
        "definition": (
            f"{PRECISION_KEY}: the largest |Δ response-mean JS| (nats) between the run's scoring in {scoring_dtype} "
            "and "
            "the same sampled responses re-scored in float32 by the same call; pair differences smaller than it are "
            "not findings"
        ),
        "by_value": {name: dict(stats) for name, stats in by_value.items()},
        "seconds": seconds,
    }


def generation_precision(generation_dtype: str) -> dict[str, Any]:
    """The generation-precision record (never measured in a run)."""
    if generation_dtype == REFERENCE:
        return {"applies": False, "measured": False, "note": "generated in float32, the reference precision"}
    return {
        "applies": True,
        "measured": False,
        "run_dtype": generation_dtype,
        "note": GENERATION_NOTE.format(dtype=generation_dtype),
    }


def scoring_precision_nats(noise_floor: Mapping[str, Any] | None) -> float | None:
    """The measured scoring-precision bound in nats, or None (float32 run, not measured, imported)."""
    record = ((noise_floor or {}).get("precision") or {}).get("scoring") or {}
    value = record.get(PRECISION_KEY) if record.get("measured") else None
    return None if value is None else float(value)


def precision_coverage(noise_floor: Mapping[str, Any] | None) -> tuple[list[str], list[str], list[str]]:
    """(covered, not covered, not applicable) sentences for the two precision effects of a run."""
    precision = (noise_floor or {}).get("precision")
    if not precision:
        unknown = "numeric precision of {}: unknown (no precision record: imported results or an older run)"
        return [], [unknown.format("scoring"), unknown.format("generation")], []
    covered, missing, not_applicable = [], [], []
    scoring = precision["scoring"]
    if not scoring["applies"]:
        not_applicable.append(f"numeric precision of scoring: {scoring['note']}")
    elif scoring["measured"]:
        covered.append(
            f"numeric precision of scoring ({scoring['run_dtype']} vs float32 on the same responses): measured in the "
            f"run, up to {scoring[PRECISION_KEY]:.3g} nats of response-mean JS"
        )
    else:
        missing.append(f"numeric precision of scoring ({scoring['run_dtype']} vs float32): {scoring['note']}")
    generation = precision["generation"]
    if generation["applies"]:
        missing.append(f"numeric precision of generation: {generation['note']}")
    else:
        not_applicable.append(f"numeric precision of generation: {generation['note']}")
    return covered, missing, not_applicable
