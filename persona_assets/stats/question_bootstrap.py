"""Question-level uncertainty: how much the pair values move with which questions were asked.

A pair's JS is the mean over questions of its per-question JS, so the questions are the sampling
unit that decides how precise it is (the noise floor only covers re-scoring the same responses).
`QuestionBootstrap` resamples questions with replacement — the same draw for every pair, so the
dependence between pairs that share questions is kept — and everything computed from pair values
is recomputed on each resample: per-pair SE and 95% CI, the discrimination statistics, ρ(JS, cosine),
and the uncertainty of every difference between two pair values.

No dagster import.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from persona_assets.runs.errors import InputError
from persona_assets.stats.helpers import json_float as _json_float
from persona_assets.stats.helpers import percentile_ci as _percentile_ci
from persona_assets.stats.helpers import rowwise_pearson as _rowwise_pearson
from persona_assets.stats.intervals import (
    DECISION_LEVEL,
    RATIO_CALIBRATION_WIDENING,
    basic_ci,
    calibration_label,
    decision_factor,
    jackknife_bias_corrected,
    log_t_ci,
    t_quantile,
    widen,
)

UNIT = "questions (resampled with replacement; one draw shared by all pairs)"
DECIDED = "decided by the data"
TOO_CLOSE = "too close to call"
PAIR_CI_RULE = (
    "ci95 = value · exp(± t(Q−1, 0.975) · √(Q/(Q−1)) · SE / value), SE = the question-bootstrap SD: Student's t "
    "interval of a mean over Q questions, on the log scale (a mean of right-skewed per-question JS is right-skewed; "
    "the symmetric interval missed 7–11% of true pair means in the simulations, the percentile one more)"
)


def t_multiplier(n_questions: int) -> float:
    """The half-width of a 95% interval in bootstrap SEs of a mean over n questions.

    The bootstrap SD of a mean is the plug-in SD / √Q, i.e. √((Q−1)/Q) times the usual standard
    error; rescaling it and using Student's t with Q − 1 degrees of freedom gives the classical
    t interval, which holds its coverage with 20 questions where the normal / percentile ones do not
    (benchmarks/calibration.py).
    """
    if n_questions < 2:
        return math.inf
    return float(stats.t.ppf(0.975, n_questions - 1)) * math.sqrt(n_questions / (n_questions - 1))


@dataclass(frozen=True)
class QuestionBootstrap:
    """Resampled pair values: ``draws[b, k]`` is pair k's value on question resample b."""

    pairs: pd.DataFrame  # persona_a, persona_b, value (the mean over questions)
    draws: np.ndarray  # [n_boot, n_pairs]
    n_questions: int
    n_boot: int
    seed: int
    value: str
    noise: dict[str, Any] | None = None  # `fitted_noise` of the per-question values
    leave_one_out: np.ndarray | None = None  # [n_questions, n_pairs]: pair values without question j (jackknife)

    @property
    def values(self) -> np.ndarray:
        return self.pairs["value"].to_numpy(dtype=float)

    def describe(self) -> dict[str, Any]:
        return {
            "resampling_unit": UNIT,
            "n_questions": self.n_questions,
            "n_boot": self.n_boot,
            "seed": self.seed,
            "value": self.value,
            "pair_ci_rule": PAIR_CI_RULE,
            "pair_ci_calibration": calibration_label("pair_js"),
        }


def question_bootstrap(per_question: pd.DataFrame, value: str, *, n_boot: int, seed: int) -> QuestionBootstrap:
    """Bootstrap over questions of the per-pair mean of ``value``.

    ``per_question`` has one row per (persona_a, persona_b, question_index). A pair lacking some
    questions averages over the ones it has in each resample (weights of absent questions drop out).
    """
    needed = {"persona_a", "persona_b", "question_index", value}
    if missing := needed - set(per_question.columns):
        raise InputError(f"per-question table lacks column(s) {', '.join(sorted(missing))}")
    if n_boot < 1:
        raise InputError(f"n_boot must be >= 1, got {n_boot}")
    wide = per_question.pivot_table(
        index=["persona_a", "persona_b"], columns="question_index", values=value, sort=False
    )
    matrix = wide.to_numpy(dtype=float)  # [pairs, questions], NaN where a pair lacks a question
    present = np.isfinite(matrix)
    filled = np.where(present, matrix, 0.0)
    n_q = matrix.shape[1]
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_q, size=(n_boot, n_q)) + (np.arange(n_boot) * n_q)[:, None]
    weights = np.bincount(draws.ravel(), minlength=n_boot * n_q).reshape(n_boot, n_q).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = (weights @ filled.T) / (weights @ present.T.astype(float))
    means = np.where(present, matrix, np.nan)
    pairs = wide.index.to_frame(index=False)
    pairs["value"] = np.nanmean(means, axis=1)
    counts = present.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        loo = (filled.sum(axis=1)[None, :] - filled.T) / (counts[None, :] - present.T)
    return QuestionBootstrap(pairs, boot, n_q, int(n_boot), int(seed), value, fitted_noise(matrix), loo)


# The per-question noise up to which the gates' calls are made (benchmarks/calibration.py): with the 95% CIs
# the max/min gate was decided on the wrong side in up to 4.0% of runs near its threshold at log-sd 0.5 and 15% at
# 0.8; with the 99% decision intervals, in ≤ 0.6% at 0.41–0.5 and ≤ 1.6% at 0.8. Above this the data decide nothing.
CALIBRATED_PAIR_NOISE = 0.45


def fitted_noise(matrix: np.ndarray) -> dict[str, Any]:
    """Log-sd of the per-question values by question and by pair × question (two-way fit on the log scale).

    Uses the pairs with a positive value on every question; None where fewer than 2 pairs or questions remain.
    """
    complete = matrix[np.all(np.isfinite(matrix) & (matrix > 0), axis=1)]
    out: dict[str, Any] = {"n_pairs_used": int(complete.shape[0]), "scale": "natural log of the per-question value"}
    if complete.shape[0] < 2 or complete.shape[1] < 2:
        return out | {"pair_by_question_log_sd": None, "question_log_sd": None}
    logs = np.log(complete)
    residual = logs - logs.mean(axis=1, keepdims=True) - logs.mean(axis=0, keepdims=True) + logs.mean()
    dof = (logs.shape[0] - 1) * (logs.shape[1] - 1)
    return out | {
        "pair_by_question_log_sd": float(np.sqrt((residual**2).sum() / dof)),
        "question_log_sd": float(logs.mean(axis=0).std(ddof=1)),
    }


DECISION_RULE = (
    f"{DECISION_LEVEL:.0%} decision interval: the 95% interval's halves × {{factor:.3f}} on the {{scale}} scale "
    "(t(Q−1, 0.995) / t(Q−1, 0.975); for max/min also × "
    f"{RATIO_CALIBRATION_WIDENING}, the widening its 95% interval needed to cover in the simulations); a gate is "
    "decided by the data only when it lies wholly on the verdict's side"
)
BASIC_RULE = (
    "basic (reverse-percentile) bootstrap on the {scale} scale: [2·f(θ̂) − f(q97.5), 2·f(θ̂) − f(q2.5)] mapped back; "
    "each resample adds question noise to an already noisy statistic, so the percentile interval "
    "(ci95_percentile) is shifted by the statistic's bias and undercovers; the basic interval shifts it back"
)


def _interval(
    point: float | None, samples: np.ndarray, scale: str, n_questions: int, widening: float = 1.0
) -> dict[str, Any]:
    finite = samples[np.isfinite(samples)]
    ci = basic_ci(point, samples, scale)
    return {
        "estimate": _json_float(point),
        "se": float(finite.std(ddof=1)) if finite.size > 1 else None,
        "ci95": ci,
        "interval": BASIC_RULE.format(scale=scale),
        "ci95_percentile": _percentile_ci(samples),
    } | _decision(ci, point, scale, decision_factor(n_questions, widening))


def _decision(ci, centre: float | None, scale: str, factor: float) -> dict[str, Any]:
    """The interval a gate decides from (`DECISION_RULE`)."""
    return {
        "decision_ci99": widen(ci, centre, scale, factor),
        "decision_interval": DECISION_RULE.format(factor=factor, scale=scale),
    }


def pair_intervals(qb: QuestionBootstrap) -> list[dict[str, Any]]:
    """Per pair: value, question-bootstrap SE, relative SE, 95% CI (`PAIR_CI_RULE`) and the percentile CI."""
    se = qb.draws.std(axis=0, ddof=1) if qb.n_boot > 1 else np.full(qb.draws.shape[1], np.nan)
    lo, hi = np.nanpercentile(qb.draws, [2.5, 97.5], axis=0)
    multiplier = t_multiplier(qb.n_questions)
    rows = []
    for k, (a, b, v) in enumerate(zip(qb.pairs["persona_a"], qb.pairs["persona_b"], qb.values)):
        rows.append(
            {
                "persona_a": a,
                "persona_b": b,
                qb.value: float(v),
                "se": _json_float(se[k]),
                "relative_se": _json_float(se[k] / v) if v > 0 else None,
                "ci95": log_t_ci(float(v), float(se[k]), multiplier),
                "ci95_percentile": [float(lo[k]), float(hi[k])],
            }
        )
    return rows


def discrimination_statistics(values: np.ndarray) -> dict[str, np.ndarray]:
    """std (ddof=1), max/min and CV of pair values; each row of a [B, pairs] array is one set."""
    v = np.atleast_2d(np.asarray(values, dtype=float))
    std = v.std(axis=1, ddof=1)
    low, high, mean = v.min(axis=1), v.max(axis=1), v.mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(low > 0, high / low, np.inf)
        cv = np.where(mean > 0, std / mean, np.nan)
    return {"js_std": std, "max_min_ratio": ratio, "coefficient_of_variation": cv}


STD_RULE = (
    "t interval on the log scale about the jackknife bias-corrected std: exp(log s − (Q−1)(mean_j log s₍₋ⱼ₎ − log s) "
    "± t(Q−1, 0.975) · SE), SE = the question-bootstrap SD of log s, s₍₋ⱼ₎ the std without question j; the question "
    "noise in each pair value inflates the std by a term of order 1/Q, which the jackknife removes"
)


def _std_interval(qb: QuestionBootstrap, point: float, boot: np.ndarray) -> dict[str, Any]:
    """The std's interval (`STD_RULE`): bias-corrected on the log scale, bootstrap SE, Student's t."""
    logs = np.log(boot[np.isfinite(boot) & (boot > 0)])
    loo = discrimination_statistics(qb.leave_one_out)["js_std"] if qb.leave_one_out is not None else np.array([])
    loo = loo[np.isfinite(loo) & (loo > 0)]
    corrected = jackknife_bias_corrected(math.log(point), np.log(loo)) if point > 0 and loo.size > 1 else None
    if corrected is None or logs.size < 2:
        return {"ci95": None, "decision_ci99": None, "bias_corrected_estimate": None}
    half = t_quantile(qb.n_questions) * float(logs.std(ddof=1))
    ci = [_json_float(math.exp(corrected - half)), _json_float(math.exp(corrected + half))]
    return {"ci95": ci, "interval": STD_RULE, "bias_corrected_estimate": _json_float(math.exp(corrected))} | _decision(
        ci, math.exp(corrected), "log", decision_factor(qb.n_questions)
    )


def discrimination_intervals(qb: QuestionBootstrap) -> dict[str, dict[str, Any]]:
    """std (`STD_RULE`), max/min and CV (basic bootstrap on the log scale), each with its decision interval and its
    calibration label (`calibration_label`)."""
    point = discrimination_statistics(qb.values)
    boot = discrimination_statistics(qb.draws)
    out = {}
    for name in point:
        samples = np.where(np.isfinite(boot[name]), boot[name], np.nan)
        infinite = int(np.isinf(boot[name]).sum())
        widening = RATIO_CALIBRATION_WIDENING if name == "max_min_ratio" else 1.0
        entry = _interval(float(point[name][0]), samples, "log", qb.n_questions, widening)
        if name == "js_std":
            entry |= _std_interval(qb, float(point[name][0]), samples)
        entry["calibration"] = calibration_label(name)
        if infinite:
            entry["note"] = f"{infinite} resamples had a zero pair value (infinite ratio) and were skipped"
        out[name] = entry
    out["fitted_noise"] = dict(qb.noise or {}) | {"calibrated_up_to_pair_by_question_log_sd": CALIBRATED_PAIR_NOISE}
    return out


def spearman_intervals(qb: QuestionBootstrap, others: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Question-bootstrap CI of Spearman ρ(pair value, other) for each fixed vector in ``others``.

    ``others`` are per-pair values in the order of ``qb.pairs`` (e.g. a cosine per layer), held
    fixed: only the questions of the pair values are resampled. NaN entries are left out.
    """
    out = {}
    for name, other in others.items():
        other = np.asarray(other, dtype=float)
        keep = np.isfinite(other) & np.isfinite(qb.values)
        if keep.sum() < 3 or np.ptp(other[keep]) == 0:
            out[name] = {
                "estimate": None,
                "se": None,
                "ci95": None,
                "n": int(keep.sum()),
                "note": "fewer than 3 pairs or constant",
            }
            continue
        point = float(stats.spearmanr(qb.values[keep], other[keep])[0])
        ranks_other = np.broadcast_to(stats.rankdata(other[keep]), (qb.n_boot, int(keep.sum())))
        boot = _rowwise_pearson(stats.rankdata(qb.draws[:, keep], axis=1), ranks_other)
        out[name] = _interval(point, boot, "Fisher z", qb.n_questions) | {
            "n": int(keep.sum()),
            "calibration": calibration_label("spearman_rho"),
        }
    return out


def differences_against_uncertainty(
    qb: QuestionBootstrap, floor_nats: float | None, scoring_precision_nats: float | None = None
) -> dict[str, Any]:
    """Every difference between two pair values against its question-bootstrap SE, the floor and precision.

    SE of a difference = sqrt(var_i + var_j − 2 cov_ij) over the same question resamples. A
    difference is a finding when it exceeds all three that apply: the question uncertainty, the
    noise floor (when measured) and twice the scoring-precision bound (when the run scored in reduced
    precision and measured it; None otherwise): each pair value may move by up to the bound.
    """
    values = qb.values
    n = values.size
    i, j = np.triu_indices(n, k=1)
    diffs = np.abs(values[j] - values[i])
    cov = np.cov(qb.draws, rowvar=False, ddof=1) if qb.n_boot > 1 else np.zeros((n, n))
    cov = np.atleast_2d(cov)
    se = np.sqrt(np.maximum(cov[i, i] + cov[j, j] - 2 * cov[i, j], 0.0))
    multiplier = t_multiplier(qb.n_questions)
    unresolved = diffs < multiplier * se
    sorted_values = np.sort(values)
    gaps = np.diff(sorted_values)
    pair_se = np.sqrt(np.diag(cov))
    out: dict[str, Any] = {
        "n_pair_differences": int(diffs.size),
        "n_within_question_uncertainty": int(unresolved.sum()),
        "share_within_question_uncertainty": float(unresolved.mean()) if diffs.size else None,
        "median_pair_se": float(np.median(pair_se)) if n else None,
        "median_relative_pair_se": float(np.median(pair_se[values > 0] / values[values > 0]))
        if (values > 0).any()
        else None,
        "median_gap_between_neighbouring_pair_values": float(np.median(gaps)) if gaps.size else None,
        "rule": (
            f"a difference is within the question uncertainty when |difference| < {multiplier:.3f} × its "
            "question-bootstrap SE "
            f"(t({qb.n_questions - 1}, 0.975) · √(Q/(Q−1)), as for the pair CIs)"
        ),
    }
    below_floor = diffs < floor_nats if floor_nats is not None else np.zeros(diffs.shape, dtype=bool)
    # Each of the two pair values may move by up to the precision bound: their difference by twice it.
    below_precision = (
        diffs < 2 * scoring_precision_nats if scoring_precision_nats is not None else np.zeros(diffs.shape, dtype=bool)
    )
    out["n_below_noise_floor"] = int(below_floor.sum()) if floor_nats is not None else None
    out["n_below_scoring_precision"] = int(below_precision.sum()) if scoring_precision_nats is not None else None
    out["n_findings"] = int((~unresolved & ~below_floor & ~below_precision).sum())
    out["findings_rule"] = (
        "a difference is a finding when it lies outside the question uncertainty"
        + (", above the noise floor" if floor_nats is not None else " (the noise floor is unknown)")
        + (", and above twice the scoring-precision bound" if scoring_precision_nats is not None else "")
    )
    out["note"] = (
        f"{out['n_findings']} of {diffs.size} differences between pair values are findings; "
        f"{out['n_within_question_uncertainty']} lie within the question-level uncertainty (they could reverse with "
        "another draw of questions)" + ("" if floor_nats is not None else "; the noise floor is unknown")
    )
    return out


def ci_side(ci: Sequence[float] | None, threshold: float) -> str | None:
    """'below' / 'above' when the whole CI lies strictly on that side of the threshold, 'straddles' when
    it touches or contains it, None when there is no finite CI."""
    if ci is None or None in ci or not all(math.isfinite(v) for v in ci):
        return None
    if ci[1] < threshold:
        return "below"
    if ci[0] > threshold:
        return "above"
    return "straddles"


def threshold_call(ci: Sequence[float] | None, threshold: float, *, estimate: float | None) -> str | None:
    """'decided by the data' only when the whole CI lies on the side of the threshold where the estimate lies.

    A CI that contains the threshold, or that lies wholly on the other side of it than the estimate
    (point and interval disagree), is 'too close to call'. None when the CI or the estimate is missing.
    """
    side = ci_side(ci, threshold)
    if side is None or estimate is None or not math.isfinite(estimate):
        return None
    point = "below" if estimate < threshold else "above" if estimate > threshold else "at"
    return DECIDED if side == point else TOO_CLOSE
