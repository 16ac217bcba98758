"""Interval arithmetic of the question bootstrap: transformed scales, basic and t intervals, the jackknife
over questions, and the wider interval a gate decides from.

Plain numpy/scipy; no dagster import.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from persona_assets.stats.helpers import json_float

# A gate is "decided by the data" only when this interval lies wholly on the verdict's side.
DECISION_LEVEL = 0.99
SCALES = {
    "log": (np.log, np.exp),
    "Fisher z": (lambda v: np.arctanh(np.clip(v, -1 + 1e-12, 1 - 1e-12)), np.tanh),
}


def t_quantile(n_questions: int, level: float = 0.95) -> float:
    """Student's t quantile with Q − 1 degrees of freedom for a two-sided interval at ``level``."""
    if n_questions < 2:
        return math.inf
    return float(stats.t.ppf(0.5 + level / 2, n_questions - 1))


# The max/min interval misses its truth far more often than 5% (12.6–24.6%, benchmarks/calibration.py): in a scan of
# 300 runs per scenario its halves had to be widened up to 1.68× for the 95% interval to cover in 95% of runs of every
# design at per-question noise ≤ 0.5 (the range in which the gates decide anything). Its decision interval is widened
# by this on top of the 99% factor.
RATIO_CALIBRATION_WIDENING = 1.7


def decision_factor(n_questions: int, widening: float = 1.0) -> float:
    """How much wider, on its scale, the decision interval is than the 95% one: t(Q−1, 0.995) / t(Q−1, 0.975).

    Near a threshold a 95% interval that misses the truth by more than the truth's distance to the
    threshold decides the gate on the wrong side; the 95% intervals here miss 4–64% of the time
    (benchmarks/calibration.py), so a call needs the 99% interval on its side. ``widening`` scales it further
    for a statistic whose 95% interval is known to undercover (`RATIO_CALIBRATION_WIDENING`).
    """
    if n_questions < 2:
        return math.inf
    return widening * t_quantile(n_questions, DECISION_LEVEL) / t_quantile(n_questions, 0.95)


def basic_ci(point: float | None, samples: np.ndarray, scale: str) -> list[float | None] | None:
    """The basic bootstrap 95% CI of ``point`` on a transformed scale ('log' for positive statistics, 'Fisher z'
    for ρ)."""
    forward, back = SCALES[scale]
    valid = samples[np.isfinite(samples)]
    if scale == "log":
        valid = valid[valid > 0]
    if point is None or not math.isfinite(point) or valid.size < 2 or (scale == "log" and point <= 0):
        return None
    low_q, high_q = np.percentile(forward(valid), [2.5, 97.5])
    centre = float(forward(np.asarray(point)))
    return [json_float(back(2 * centre - high_q)), json_float(back(2 * centre - low_q))]


def widen(ci: Sequence[float | None] | None, centre: float | None, scale: str, factor: float) -> list | None:
    """``ci`` with each half (centre to end) multiplied by ``factor`` on ``scale``; None when undefined.

    The centre is where the interval was built around (the point of a basic interval, the centre of a t
    interval), so a 95% interval becomes the matching wider one without new resamples.
    """
    if ci is None or None in ci or centre is None or not math.isfinite(factor):
        return None
    forward, back = SCALES[scale]
    if scale == "log" and (centre <= 0 or min(ci) <= 0):
        return None
    c, lo, hi = (float(forward(np.asarray(v))) for v in (centre, ci[0], ci[1]))
    return [json_float(back(c - factor * (c - lo))), json_float(back(c + factor * (hi - c)))]


def log_t_ci(value: float, se: float, multiplier: float) -> list[float | None]:
    """value · exp(± multiplier · se / value): a t interval on the log scale (delta-method SE se/value).

    A mean of right-skewed per-question values is itself right-skewed; the symmetric interval on the
    natural scale misses above more often than below, the log-scale one does not.
    """
    if not (value > 0 and math.isfinite(se)):
        return [json_float(value - multiplier * se), json_float(value + multiplier * se)]
    half = multiplier * se / value
    return [json_float(value * math.exp(-half)), json_float(value * math.exp(half))]


def jackknife_bias_corrected(point: float, leave_one_out: np.ndarray) -> float | None:
    """θ̂ − (Q − 1)(mean of the leave-one-question-out estimates − θ̂), Quenouille's bias correction.

    The question noise in each pair value inflates a spread statistic by an amount of order 1/Q; the
    jackknife removes that term.
    """
    loo = leave_one_out[np.isfinite(leave_one_out)]
    if loo.size < 2 or not math.isfinite(point):
        return None
    return float(point - (loo.size - 1) * (loo.mean() - point))


GOAL_MISS_RATE = 0.06
CALIBRATION_SOURCE = "benchmarks/calibration.py --designs 500: benchmarks/results/calibration_verdicts_xeon_2core.txt"
# How often each reported 95% interval missed its truth under the verdict designs (min–max over the designs and
# scenarios of persona_assets/analysis/calibration_designs.py), as measured by the committed calibration run.
MEASURED_MISS_RATES: dict[str, tuple[float, float]] = {
    "pair_js": (0.070, 0.110),
    "js_std": (0.040, 0.072),
    "max_min_ratio": (0.126, 0.246),
    "spearman_rho": (0.158, 0.640),
}


def calibration_label(statistic: str) -> dict[str, object]:
    """Whether the statistic's 95% interval held its coverage in the simulations, with the measured miss rates.

    An interval whose worst measured miss rate exceeds `GOAL_MISS_RATE` is 'liberal': shown only with this label,
    never in a headline, and no verdict is worded as precise on its strength.
    """
    rates = MEASURED_MISS_RATES.get(statistic)
    if rates is None:
        return {"holds_95": False, "measured_miss_rate": None, "label": "not calibrated (no simulation measured it)"}
    low, high = rates
    holds = high <= GOAL_MISS_RATE
    words = "holds 95%" if holds else "liberal"
    return {
        "holds_95": holds,
        "measured_miss_rate": [low, high],
        "label": f"{words}: missed the truth in {low:.1%}–{high:.1%} of simulated runs (goal ≤ {GOAL_MISS_RATE:.0%}; "
        f"{CALIBRATION_SOURCE})",
    }


def short_label(statistic: str) -> str:
    """'' for an interval that holds its coverage, else ' (liberal: misses a–b%)' to follow it wherever it is shown."""
    info = calibration_label(statistic)
    if info["holds_95"]:
        return ""
    rates = info["measured_miss_rate"]
    if rates is None:
        return " (not calibrated)"
    return f" (liberal: misses {rates[0]:.1%}–{rates[1]:.1%})"
