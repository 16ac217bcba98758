"""The noise floor of the divergence measurement: how much JS/KL move when nothing but the batch changes.

The same response, teacher-forced under the same prompts, gives slightly different numbers when
its scoring sequences share a forward with other sequences (padding, packing change the kernels'
blocking and reduction order). A difference between two pair JS values smaller than this floor is
not a finding.

`difference_stats` compares the per-token divergences of one scoring composition with those of a
reference composition; `noise_floor_summary` turns the comparisons into the floor the analyses
use; `floor_evidence` counts which pair-JS values and differences fall below it.

The floor (`js_abs_nats`) is the largest absolute difference of a response-mean JS seen in the
sample. A pair JS value is a mean of response-mean JS values, so its own noise is at most the
largest noise of the responses it averages (if the sample is representative); the difference of
two pair values is uncertain by up to twice that.

No dagster import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from persona_assets.measure.precision import precision_coverage, scoring_precision_nats

VALUES = ("js", "kl_ab", "kl_ba")
FLOOR_KEY = "js_abs_nats"
UNKNOWN_FLOOR_NOTE = (
    "noise floor unknown: these matrices were imported without a noise-floor measurement (no model run), so "
    "small differences between pair JS values cannot be told apart from batch-composition noise"
)

# What the floor measures and what it does not: a pair difference is a finding only when it exceeds every
# uncertainty that applies (the floor, the question bootstrap, and scoring precision where it applies).
FLOOR_COVERS = "batch-composition rounding: the same responses re-scored alone and in other batch compositions"
QUESTIONS_COVERED_BY = "which questions were asked: question_bootstrap (per-pair SE and CI over questions)"

# One scoring of one response: value name -> [pairs, tokens] array.
Scoring = Mapping[str, np.ndarray]


def sample_positions(n: int, k: int) -> list[int]:
    """k positions spread evenly over 0..n-1 (first and last included); deterministic."""
    if n <= 0 or k <= 0:
        return []
    if k >= n:
        return list(range(n))
    if k == 1:
        return [0]
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def _stats(values: np.ndarray) -> tuple[float | None, float | None]:
    values = values[np.isfinite(values)]
    if not values.size:
        return None, None
    return float(values.max()), float(np.median(values))


def _relative(diff: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """|diff| / |reference| where the reference is non-zero (a zero reference has no relative error)."""
    scale = np.abs(reference)
    keep = scale > 0
    return diff[keep] / scale[keep]


def difference_stats(reference: Sequence[Scoring], other: Sequence[Scoring]) -> dict[str, dict[str, float | None]]:
    """Absolute and relative differences of `other` from `reference`, per token and per response.

    Args:
        reference, other: one Scoring per response, in the same order and shapes.

    Returns:
        Per value name (js, kl_ab, kl_ba): max and median over all (pair, token) entries of the
        per-token difference, and over all pairs of the response-mean (mean over tokens)
        difference; absolute in nats, relative to |reference|.
    """
    if len(reference) != len(other):
        raise ValueError(f"{len(reference)} reference scorings but {len(other)} to compare")
    out: dict[str, dict[str, float | None]] = {}
    for name in VALUES:
        token_abs, token_rel, mean_abs, mean_rel = [], [], [], []
        for ref, oth in zip(reference, other):
            r = np.asarray(ref[name], dtype=np.float64)
            o = np.asarray(oth[name], dtype=np.float64)
            if r.shape != o.shape or r.ndim != 2:
                raise ValueError(f"{name}: shapes {r.shape} and {o.shape} differ or are not [pairs, tokens]")
            diff = np.abs(o - r)
            token_abs.append(diff.ravel())
            token_rel.append(_relative(diff.ravel(), r.ravel()))
            mean_diff = np.abs(o.mean(axis=1) - r.mean(axis=1))
            mean_abs.append(mean_diff)
            mean_rel.append(_relative(mean_diff, r.mean(axis=1)))
        stats: dict[str, float | None] = {}
        for label, parts in (
            ("per_token_abs", token_abs),
            ("per_token_rel", token_rel),
            ("per_response_abs", mean_abs),
            ("per_response_rel", mean_rel),
        ):
            stats[f"{label}_max"], stats[f"{label}_median"] = _stats(np.concatenate(parts) if parts else np.array([]))
        out[name] = stats
    return out


def _largest(
    by_composition: Mapping[str, Mapping[str, Mapping[str, float | None]]], names: Sequence[str], key: str
) -> float | None:
    found = [s[name][key] for s in by_composition.values() for name in names if s[name][key] is not None]
    return max(found) if found else None


def largest_differences(
    by_composition: Mapping[str, Mapping[str, Mapping[str, float | None]]],
) -> dict[str, float | None]:
    """The headline numbers of `difference_stats` results: the largest differences over them all.

    `js_abs_nats` is the largest |Δ response-mean JS|, `js_rel` the same relative, then the largest
    per-token JS difference and the largest response-mean KL differences (both directions).
    """
    return {
        FLOOR_KEY: _largest(by_composition, ["js"], "per_response_abs_max"),
        "js_rel": _largest(by_composition, ["js"], "per_response_rel_max"),
        "js_per_token_abs_nats": _largest(by_composition, ["js"], "per_token_abs_max"),
        "kl_abs_nats": _largest(by_composition, ["kl_ab", "kl_ba"], "per_response_abs_max"),
        "kl_rel": _largest(by_composition, ["kl_ab", "kl_ba"], "per_response_rel_max"),
    }


def noise_floor_summary(
    by_composition: Mapping[str, Mapping[str, Mapping[str, float | None]]],
    *,
    reference: str,
    compositions: Mapping[str, str],
    samples: list[dict[str, Any]],
) -> dict[str, Any]:
    """The asset-ready record: the floor (largest differences over all compositions) and the detail.

    Args:
        by_composition: composition name -> `difference_stats` against the reference composition.
        reference: the composition the run's numbers come from.
        compositions: name -> what the composition is (every compared one and the reference).
        samples: one description per re-scored response.
    """
    return {
        "measured": bool(by_composition),
        **largest_differences(by_composition),
        "definition": (
            f"{FLOOR_KEY}: the largest |Δ response-mean JS| (nats) between the run's batch composition and the "
            "others, over the re-scored sample; *_rel: the same relative to the run's value; per-token and KL "
            "likewise. A pair JS value is a mean of response-mean JS, so it is uncertain by up to the floor; "
            "pair differences smaller than the floor are not findings."
        ),
        "reference_composition": reference,
        "compositions": dict(compositions),
        "samples": samples,
        "by_composition": {name: dict(stats) for name, stats in by_composition.items()},
    }


def not_measured(reason: str) -> dict[str, Any]:
    """The record when no floor was measured (disabled, nothing to score, imported results)."""
    return {"measured": False, FLOOR_KEY: None, "note": reason}


def floor_nats(noise_floor: Mapping[str, Any] | None) -> float | None:
    """The floor in nats from a `noise_floor_summary` record, or None when unknown."""
    if not noise_floor or not noise_floor.get("measured"):
        return None
    value = noise_floor.get(FLOOR_KEY)
    return None if value is None else float(value)


def uncertainty_coverage(noise_floor: Mapping[str, Any] | None) -> dict[str, Any]:
    """Which uncertainties of a run's pair values are measured, by what, and which are not.

    `floor` is what the noise floor itself covers; `covered_elsewhere` the effects measured
    otherwise (the question bootstrap, the float32 re-scoring); `not_covered` what nothing in the
    run bounds; `not_applicable` the precision effects a float32 run does not have.
    """
    covered, missing, not_applicable = precision_coverage(noise_floor)
    measured = bool((noise_floor or {}).get("measured"))
    return {
        "floor": FLOOR_COVERS if measured else None,
        "covered_elsewhere": [QUESTIONS_COVERED_BY, *covered],
        "not_covered": (
            [] if measured else [f"batch composition: {(noise_floor or {}).get('note') or UNKNOWN_FLOOR_NOTE}"]
        )
        + missing,
        "not_applicable": not_applicable,
    }


def floor_evidence(pair_js: np.ndarray, noise_floor: Mapping[str, Any] | None) -> dict[str, Any]:
    """Pair JS values set against the floor: the smallest gap, and what falls below the floor.

    Counts the differences between every two pair JS values (not only neighbours in sorted order)
    that are smaller than the floor, and the pair values themselves below it (not told apart from
    zero, i.e. from a persona scored against itself).
    """
    values = np.sort(np.asarray(pair_js, dtype=float)[np.isfinite(np.asarray(pair_js, dtype=float))])
    gaps = np.diff(values)
    i, j = np.triu_indices(values.size, k=1)
    differences = np.abs(values[j] - values[i])
    floor = floor_nats(noise_floor)
    out: dict[str, Any] = {
        "noise_floor_js_nats": floor,
        "smallest_gap_between_pair_js": float(gaps.min()) if gaps.size else None,
        "n_pair_js_differences": int(differences.size),
        "uncertainties": uncertainty_coverage(noise_floor),
    }
    precision = scoring_precision_nats(noise_floor)
    out["scoring_precision_js_nats"] = precision
    # Each of the two pair values may move by up to the bound, so their difference by up to twice it.
    out["n_pair_js_differences_below_scoring_precision"] = (
        None if precision is None else int((differences < 2 * precision).sum())
    )
    if floor is None:
        out |= {
            "n_pair_js_differences_below_floor": None,
            "n_pair_js_below_floor": None,
            "note": (noise_floor or {}).get("note") or UNKNOWN_FLOOR_NOTE,
        }
        return out
    below = int((differences < floor).sum())
    out |= {
        "n_pair_js_differences_below_floor": below,
        "n_pair_js_below_floor": int((values < floor).sum()),
        "note": (
            f"pair JS differences below the noise floor ({floor:.3g} nats) are not findings: {below} of "
            f"{differences.size} differences between pair JS values are below it"
            + (
                ""
                if precision is None
                else f"; {out['n_pair_js_differences_below_scoring_precision']} are below twice the scoring-precision "
                "bound "
                f"({precision:.3g} nats, the run's dtype vs float32), which are not findings either"
            )
        ),
    }
    return out
