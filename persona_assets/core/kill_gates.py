"""The pre-registered kill criteria, judged from the numbers with their evidence.

- Discrimination: output-level similarity is only useful if pairs differ. Killed when the
  standard deviation of the pair JS values is below `min_std` (nats) or the max/min ratio of
  pair JS is below `min_ratio`.
- Redundancy: killed when |Spearman ρ(JS, cosine)| exceeds `max_abs_rho` at any layer, i.e. JS
  adds little beyond hidden-state cosine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

LN2 = math.log(2)


def max_sample_std(b: float, n: int) -> float:
    """The largest sample std (ddof=1) n ≥ 2 values in [0, b] can have: (b/2)·sqrt(n/(n−1)) for even n.

    For odd n the maximum is (b/2)·sqrt((n+1)/n), slightly less; the even-n formula is an upper
    bound for both, so a threshold above it is unreachable for any n.
    """
    return (b / 2) * math.sqrt(n / (n - 1))


def discrimination_verdict(pair_js: np.ndarray, *, min_std: float, min_ratio: float) -> dict:
    values = np.asarray(pair_js, dtype=float)
    std = float(values.std(ddof=1)) if values.size > 1 else 0.0
    mean = float(values.mean()) if values.size else float("nan")
    low, high = (float(values.min()), float(values.max())) if values.size else (float("nan"),) * 2
    ratio = high / low if low > 0 else math.inf
    notes = []
    # n values in [0, b] have a sample std (ddof=1) of at most (b/2)·sqrt(n/(n−1)) (half of them at 0,
    # half at b), so a std threshold above that bound cannot be met by spreading these values out,
    # only by larger divergences. The bound is the one of the std the verdict uses, so the note never
    # contradicts it.
    bound = max_sample_std(high, values.size) if values.size > 1 else 0.0
    if values.size and min_std > bound:
        notes.append(
            f"std ≥ {min_std} nats is unreachable by construction for {values.size} values ≤ {high:.4g} nats "
            f"(their sample std is at most (b/2)·√(n/(n−1)) = {bound:.4g}); the ratio criterion still discriminates"
        )
    if min_std > LN2 / 2:
        notes.append(f"std threshold exceeds ln2/2 = {LN2 / 2:.3f}, the largest std JS values can have")
    std_fails = std < min_std
    ratio_fails = ratio < min_ratio
    return {
        "criterion": "discrimination",
        "killed": bool(std_fails or ratio_fails),
        "rule": f"killed if std(pair JS) < {min_std} nats or max/min(pair JS) < {min_ratio}",
        "evidence": {
            "n_pairs": int(values.size),
            "js_mean": mean,
            "js_std": std,
            "js_min": low,
            "js_max": high,
            "max_min_ratio": ratio if math.isfinite(ratio) else None,
            "coefficient_of_variation": std / mean if mean > 0 else None,
            "std_below_threshold": bool(std_fails),
            "ratio_below_threshold": bool(ratio_fails),
        },
        "thresholds": {"min_std": min_std, "min_ratio": min_ratio},
        "notes": notes,
    }


def redundancy_verdict(js_cosine_spearman_by_layer: Mapping[str, float | None], *, max_abs_rho: float) -> dict:
    usable = {layer: rho for layer, rho in js_cosine_spearman_by_layer.items() if rho is not None}
    offending = {layer: rho for layer, rho in usable.items() if abs(rho) > max_abs_rho}
    notes = []
    if not usable:
        notes.append("no JS–cosine correlation could be computed; redundancy cannot be judged")
    return {
        "criterion": "redundancy",
        "killed": bool(offending),
        "judged": bool(usable),
        "rule": f"killed if |Spearman ρ(JS, cosine)| > {max_abs_rho} at any layer",
        "evidence": {
            "spearman_rho_by_layer": dict(js_cosine_spearman_by_layer),
            "max_abs_rho": max((abs(r) for r in usable.values()), default=None),
            "layers_over_threshold": sorted(offending),
        },
        "thresholds": {"max_abs_rho": max_abs_rho},
        "notes": notes,
    }


def _calls(intervals: Mapping[str, Mapping], thresholds: Mapping[str, float]) -> dict[str, dict]:
    from persona_assets.core.question_bootstrap import threshold_call

    return {
        name: {
            "estimate": intervals.get(name, {}).get("estimate"),
            "ci95": intervals.get(name, {}).get("ci95"),
            "threshold": threshold,
            "call": threshold_call(intervals.get(name, {}).get("ci95"), threshold),
        }
        for name, threshold in thresholds.items()
    }


def overall_call(killed: bool, calls: Mapping[str, Mapping], killing: Mapping[str, bool]) -> str:
    """The verdict is decided by the data when the criteria that decide it have CIs clear of their thresholds.

    Killed: at least one failing criterion has its CI entirely on the failing side. Passed: every
    criterion has its CI entirely on the passing side. Otherwise: too close to call.
    """
    from persona_assets.core.question_bootstrap import DECIDED, TOO_CLOSE

    if killed:
        return DECIDED if any(killing[name] and calls[name]["call"] == DECIDED for name in calls) else TOO_CLOSE
    return DECIDED if calls and all(c["call"] == DECIDED for c in calls.values()) else TOO_CLOSE


def _ci_text(ci) -> str:
    return "undefined" if not ci or None in ci else f"[{ci[0]:.4g}, {ci[1]:.4g}]"


def label_discrimination(verdict: dict, intervals: Mapping[str, Mapping] | None) -> dict:
    """Add the question-bootstrap CIs of std and max/min, and whether the thresholds lie inside them."""
    if not intervals:
        verdict["question_bootstrap"] = None
        verdict["call"] = None
        verdict["notes"].append("no question bootstrap (no per-question pair JS): whether the data decide the verdict is unknown")
        return verdict
    thresholds = {"js_std": verdict["thresholds"]["min_std"], "max_min_ratio": verdict["thresholds"]["min_ratio"]}
    calls = _calls(intervals, thresholds)
    killing = {"js_std": verdict["evidence"]["std_below_threshold"], "max_min_ratio": verdict["evidence"]["ratio_below_threshold"]}
    verdict["question_bootstrap"] = calls | {"coefficient_of_variation": dict(intervals.get("coefficient_of_variation", {}))}
    verdict["call"] = overall_call(verdict["killed"], calls, killing)
    verdict["notes"].append(
        f"{verdict['call']}: question-bootstrap 95% CI of std {_ci_text(calls['js_std']['ci95'])} vs {thresholds['js_std']}, "
        f"of max/min {_ci_text(calls['max_min_ratio']['ci95'])} vs {thresholds['max_min_ratio']}"
    )
    return verdict


def label_redundancy(verdict: dict, intervals_by_layer: Mapping[str, Mapping] | None) -> dict:
    """Add per layer the question-bootstrap CI of ρ(JS, cosine) and whether ±max_abs_rho lies inside it."""
    from persona_assets.core.question_bootstrap import DECIDED, TOO_CLOSE, threshold_call

    if not intervals_by_layer:
        verdict["question_bootstrap"] = None
        verdict["call"] = None
        return verdict
    limit = verdict["thresholds"]["max_abs_rho"]
    calls = {}
    for layer, interval in intervals_by_layer.items():
        ci = interval.get("ci95")
        upper, lower = threshold_call(ci, limit), threshold_call(ci, -limit)
        call = None if upper is None else (TOO_CLOSE if TOO_CLOSE in (upper, lower) else DECIDED)
        calls[layer] = {"estimate": interval.get("estimate"), "ci95": ci, "threshold": [-limit, limit], "call": call}
    offending = set(verdict["evidence"]["layers_over_threshold"])
    verdict["question_bootstrap"] = calls
    verdict["call"] = overall_call(verdict["killed"], calls, {layer: layer in offending for layer in calls})
    return verdict
