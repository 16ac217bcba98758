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


def discrimination_verdict(pair_js: np.ndarray, *, min_std: float, min_ratio: float) -> dict:
    values = np.asarray(pair_js, dtype=float)
    std = float(values.std(ddof=1)) if values.size > 1 else 0.0
    mean = float(values.mean()) if values.size else float("nan")
    low, high = (float(values.min()), float(values.max())) if values.size else (float("nan"),) * 2
    ratio = high / low if low > 0 else math.inf
    notes = []
    # A set of values in [0, b] has std ≤ b/2, so a std threshold above half the largest value
    # present cannot be met by spreading these values out, only by larger divergences.
    if values.size and min_std > high / 2:
        notes.append(
            f"std ≥ {min_std} nats is unreachable by construction for values ≤ {high:.4g} nats "
            f"(the std of values in [0, b] is at most b/2); the ratio criterion still discriminates"
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
