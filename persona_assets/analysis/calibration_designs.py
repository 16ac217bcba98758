"""Calibration of the verdicts' intervals and calls under designs that are not the project's own.

`calibration` checks the tests' size under persona effects; this module adds what the kill gates
and the headlines rest on:

- question designs (`QuestionDesign`): fixed true pair values (the bundled study's JS, or drawn
  log-normal / heavy-tailed ones), per question v_p · exp(question effect) · exp(pair × question
  noise), both log-normal with mean 1 (log-sd 0.46 by question; 0.41 or 0.8 by pair × question, as
  fitted on the study); the truth is the expectation, so the true std, max/min and ρ(JS, cosine)
  are those of the true pair values. Near a threshold the true values are rescaled (std), spread
  (max/min) or paired with a cosine built to a given ρ, and the simulation counts how often each
  interval misses the truth and how often a criterion is "decided by the data" on the wrong side;
- leakage designs (`LeakageDesign`): the null (leakage unrelated to JS and cosine) with persona
  effects, dual-role personas (one effect as source and as target), heavy tails (t with 3 d.f.) or
  the study's JS held fixed; it counts how often each test rejects and each CI excludes 0.

No dagster import.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from persona_assets.analysis.kill_criteria import (
    discrimination_verdict,
    label_discrimination,
    label_redundancy,
    redundancy_verdict,
)
from persona_assets.stats.permutation_tests import (
    ci_excludes,
    crossed_bootstrap,
    difference_permutation_test,
    leakage_permutation_test,
)
from persona_assets.stats.intervals import basic_ci
from persona_assets.stats.question_bootstrap import (
    DECIDED,
    discrimination_intervals,
    discrimination_statistics,
    t_multiplier,
    pair_intervals,
    question_bootstrap,
    spearman_intervals,
    threshold_call,
)

ALPHA = 0.05
STUDY = Path(__file__).resolve().parents[2] / "data" / "reference_study" / "divergence_matrices.json"


def study_js() -> np.ndarray:
    """The bundled study's N×N pair JS matrix (nats)."""
    return np.asarray(json.loads(STUDY.read_text())["js_matrix"], dtype=float)


@dataclass(frozen=True)
class QuestionDesign:
    name: str
    base: str  # "study" (its JS held fixed), "lognormal" or "heavy" (t3 persona effects on the log scale)
    n_personas: int
    pair_noise: float  # log-sd of the pair × question multiplier
    question_noise: float = 0.46
    n_questions: int = 20
    n_boot: int = 199


def true_pair_values(design: QuestionDesign, seed: int = 12345) -> np.ndarray:
    """The design's fixed true pair values (one per unordered pair)."""
    n = design.n_personas
    i, j = np.triu_indices(n, k=1)
    if design.base == "study":
        return study_js()[:n, :n][i, j]
    rng = np.random.default_rng(seed)
    if design.base == "lognormal":
        u, e = rng.normal(scale=0.35, size=n), rng.normal(scale=0.35, size=(n, n))
    elif design.base == "heavy":
        u, e = 0.2 * rng.standard_t(3, size=n), 0.2 * rng.standard_t(3, size=(n, n))
    else:
        raise ValueError(f"unknown base {design.base!r}")
    return 0.03 * np.exp(u[i] + u[j] + e[i, j])


def with_ratio(values: np.ndarray, ratio: float) -> np.ndarray:
    """The values spread on the log scale (about their geometric mean) so that max/min = ratio."""
    logs = np.log(values)
    k = math.log(ratio) / np.ptp(logs)
    return np.exp(logs.mean() + k * (logs - logs.mean()))


def cosine_with_rho(values: np.ndarray, rho: float, seed: int = 7, tol: float = 0.005) -> np.ndarray:
    """A cosine vector whose Spearman ρ with ``values`` is within ``tol`` of ``rho`` (negative: similar = low JS).

    ρ of few pairs moves in steps: the noise direction is redrawn (seed, seed + 1, …) until one lands within tol.
    """
    base = stats.rankdata(values)
    sign = math.copysign(1.0, rho)
    got = math.nan
    for attempt in range(100):
        z = np.random.default_rng(seed + attempt).normal(size=values.size)
        low, high = 0.0, 100.0 * values.size
        for _ in range(80):
            mid = (low + high) / 2
            step = stats.spearmanr(values, sign * (base + mid * z))[0]
            low, high = (mid, high) if abs(step) > abs(rho) else (low, mid)
        cosine = sign * (base + low * z)
        got = stats.spearmanr(values, cosine)[0]
        if abs(got - rho) <= tol:
            return cosine
    raise ValueError(f"could not build a cosine with ρ = {rho} (got {got:.3f})")


def _per_question_table(rng: np.random.Generator, true: np.ndarray, d: QuestionDesign) -> pd.DataFrame:
    q = rng.normal(scale=d.question_noise, size=d.n_questions) - d.question_noise**2 / 2
    e = rng.normal(scale=d.pair_noise, size=(true.size, d.n_questions)) - d.pair_noise**2 / 2
    values = true[:, None] * np.exp(q[None, :] + e)
    return pd.DataFrame(
        {
            "persona_a": np.repeat(np.arange(true.size), d.n_questions),
            "persona_b": 0,
            "question_index": np.tile(np.arange(d.n_questions), true.size),
            "js": values.ravel(),
        }
    )


def _missed(ci, truth: float) -> bool:
    return ci is None or not (ci[0] <= truth <= ci[1])


def _wrong_side(call: dict, truth_fails: bool) -> bool:
    """Decided by the data, with the whole CI on the side the truth is not on."""
    return call["call"] == DECIDED and (call["ci_side"] == "failing") != truth_fails


def _wrong_side_by_ci_alone(call: dict, truth_fails: bool) -> bool:
    """As `_wrong_side` for the call the CI and estimate alone would make (before the per-question noise rule)."""
    alone = threshold_call(call["decision_ci99"], call["threshold"], estimate=call["estimate"])
    return alone == DECIDED and (call["ci_side"] == "failing") != truth_fails


def _wrong_side_95(call: dict, truth_fails: bool) -> bool:
    """As `_wrong_side_by_ci_alone` for a call made from the 95% CI (the rule before the decision interval)."""
    ci, threshold = call["ci95"], call["threshold"]
    alone = threshold_call(ci, threshold, estimate=call["estimate"])
    return alone == DECIDED and (ci[1] < threshold) != truth_fails


def question_trial(
    rng: np.random.Generator,
    d: QuestionDesign,
    true: np.ndarray,
    cosine: np.ndarray,
    *,
    min_std: float,
    min_ratio: float,
    max_abs_rho: float,
) -> dict[str, bool]:
    """One simulated run: which intervals miss the truth, which criteria are decided on the wrong side."""
    qb = question_bootstrap(_per_question_table(rng, true, d), "js", n_boot=d.n_boot, seed=int(rng.integers(2**31)))
    intervals = discrimination_intervals(qb)
    rho_interval = spearman_intervals(qb, {"layer": cosine})["layer"]
    true_std, true_ratio = float(true.std(ddof=1)), float(true.max() / true.min())
    true_rho = float(stats.spearmanr(true, cosine)[0])
    verdict = label_discrimination(discrimination_verdict(qb.values, min_std=min_std, min_ratio=min_ratio), intervals)
    redundancy = label_redundancy(
        redundancy_verdict({"layer": rho_interval["estimate"]}, max_abs_rho=max_abs_rho), {"layer": rho_interval}
    )
    std_call, ratio_call = verdict["question_bootstrap"]["js_std"], verdict["question_bootstrap"]["max_min_ratio"]
    std_fails, ratio_fails = true_std < min_std, true_ratio < min_ratio
    k = int(rng.integers(true.size))
    pair = pair_intervals(qb)[k]
    half = t_multiplier(qb.n_questions) * pair["se"]
    std_est = intervals["js_std"]["estimate"]
    return {
        "pair JS log-t interval misses": _missed(pair["ci95"], true[k]),
        "pair JS t interval misses (old)": _missed([pair["js"] - half, pair["js"] + half], true[k]),
        "std jackknife log-t CI misses": _missed(intervals["js_std"]["ci95"], true_std),
        "std basic log CI misses (old)": _missed(
            basic_ci(std_est, discrimination_statistics(qb.draws)["js_std"], "log"), true_std
        ),
        "max/min basic log CI misses": _missed(intervals["max_min_ratio"]["ci95"], true_ratio),
        "rho(JS,cos) basic Fisher-z CI misses": _missed(rho_interval["ci95"], true_rho),
        "std gate decided on the wrong side, 95% CI (old)": _wrong_side_95(std_call, std_fails),
        "max/min gate decided on the wrong side, 95% CI (old)": _wrong_side_95(ratio_call, ratio_fails),
        "std gate decided on the wrong side, CI alone": _wrong_side_by_ci_alone(std_call, std_fails),
        "max/min gate decided on the wrong side, CI alone": _wrong_side_by_ci_alone(ratio_call, ratio_fails),
        "discrimination verdict decided on the wrong side": (
            verdict["call"] == DECIDED and verdict["killed"] != (std_fails or ratio_fails)
        ),
        "std gate decided on the wrong side": _wrong_side(std_call, std_fails),
        "max/min gate decided on the wrong side": _wrong_side(ratio_call, ratio_fails),
        "redundancy gate decided on the wrong side": _wrong_side(
            redundancy["question_bootstrap"]["layer"], abs(true_rho) > max_abs_rho
        ),
    }


def gate_scenarios(d: QuestionDesign) -> dict[str, tuple[np.ndarray, np.ndarray, dict[str, float]]]:
    """Truths within 10% of each threshold (std 0.05, max/min 3, |ρ| 0.8), on either side.

    Returns name -> (true pair values, cosine, thresholds).

    std and max/min are set together on log-spread values (ρ at 0.5, far from its threshold); ρ is
    set on the design's own values (their spread kept: compressing it to max/min 3 would make the
    question noise swamp the ranks).
    """
    base = true_pair_values(d)
    thresholds = {"min_std": 0.05, "min_ratio": 3.0, "max_abs_rho": 0.8}
    out = {}
    for factor in (0.9, 1.1):
        spread = with_ratio(base, 3.0 * factor)
        scaled = spread * (0.05 * factor / spread.std(ddof=1))
        out[f"std and max/min at {factor:.1f} × threshold"] = (scaled, cosine_with_rho(scaled, -0.5), thresholds)
    for rho in (0.72, 0.81, 0.88):
        out[f"|ρ(JS, cosine)| = {rho}"] = (base, cosine_with_rho(base, -rho), thresholds)
    return out


@dataclass(frozen=True)
class LeakageDesign:
    name: str
    n_personas: int
    n_sources: int
    persona_sd: float = 1.0
    noise_sd: float = 1.0
    dual_role: bool = False  # one effect per persona as source and as target (else independent effects)
    heavy: bool = False  # t(3) effects and noise instead of normal
    study_js: bool = False  # the study's JS held fixed as the predictor
    n_perm: int = 199
    n_boot: int = 199


def _draw(rng: np.random.Generator, d: LeakageDesign, scale: float, size) -> np.ndarray:
    return scale * (rng.standard_t(3, size=size) / math.sqrt(3) if d.heavy else rng.normal(size=size))


def _matrix(rng: np.random.Generator, d: LeakageDesign) -> np.ndarray:
    n = d.n_personas
    u, e = _draw(rng, d, d.persona_sd, n), _draw(rng, d, d.noise_sd, (n, n))
    m = u[:, None] + u[None, :] + (e + e.T) / math.sqrt(2)
    np.fill_diagonal(m, 0.0)
    return m


def leakage_null_trial(rng: np.random.Generator, d: LeakageDesign) -> dict[str, bool]:
    """Leakage unrelated to JS and cosine; both predictors and leakage carry persona effects."""
    n, k = d.n_personas, d.n_sources
    js = study_js()[:n, :n] if d.study_js else _matrix(rng, d)
    cos = _matrix(rng, d)
    a = _draw(rng, d, d.persona_sd, n)
    b = a if d.dual_role else _draw(rng, d, d.persona_sd, n)
    leak = np.full((n, n), np.nan)
    leak[:k] = a[:k, None] + b[None, :] + _draw(rng, d, d.noise_sd, (k, n))
    np.fill_diagonal(leak, np.nan)
    s, t = np.nonzero(np.isfinite(leak))
    seed = int(rng.integers(2**31))
    crossed = crossed_bootstrap(-js[s, t], leak[s, t], s, t, n_boot=d.n_boot, seed=seed, z=cos[s, t])
    crossed_cos = crossed_bootstrap(cos[s, t], leak[s, t], s, t, n_boot=d.n_boot, seed=seed)
    p_js = leakage_permutation_test(js, leak, n_perm=d.n_perm, seed=seed)["spearman_p"]
    p_cos = leakage_permutation_test(cos, leak, n_perm=d.n_perm, seed=seed)["spearman_p"]
    p_difference = difference_permutation_test(-js, cos, leak, n_perm=d.n_perm, seed=seed)["p_two_sided"]
    return {
        "rho(JS,leak) permutation p": p_js < ALPHA,
        "rho(cos,leak) permutation p": p_cos < ALPHA,
        "difference permutation p": p_difference < ALPHA,
        "rho(JS,leak) persona bootstrap CI excludes 0": bool(ci_excludes(crossed["spearman_ci95"])),
        "rho(cos,leak) persona bootstrap CI excludes 0": bool(ci_excludes(crossed_cos["spearman_ci95"])),
        "difference persona bootstrap CI excludes 0": bool(ci_excludes(crossed["spearman_difference_ci95"])),
    }


def question_designs() -> list[QuestionDesign]:
    return [
        QuestionDesign("study JS fixed, N=11, noise 0.41", "study", 11, 0.41),
        QuestionDesign("study JS fixed, N=11, noise 0.5", "study", 11, 0.5),
        QuestionDesign("study JS fixed, N=11, noise 0.8", "study", 11, 0.8),
        QuestionDesign("log-normal, N=6, noise 0.41", "lognormal", 6, 0.41),
        QuestionDesign("log-normal, N=12, noise 0.8", "lognormal", 12, 0.8),
        QuestionDesign("heavy tails, N=12, noise 0.8", "heavy", 12, 0.8),
    ]


def leakage_designs() -> list[LeakageDesign]:
    return [
        LeakageDesign(
            "dual-role personas, sd 2 vs noise 0.5, N=11", 11, 5, persona_sd=2.0, noise_sd=0.5, dual_role=True
        ),
        LeakageDesign("dual-role, study JS fixed, N=11", 11, 5, dual_role=True, study_js=True),
        LeakageDesign("dual-role, heavy tails, N=12", 12, 5, dual_role=True, heavy=True),
        LeakageDesign("dual-role, N=6 (3 sources)", 6, 3, dual_role=True),
        LeakageDesign("independent source/target effects, N=12", 12, 5),
    ]


def rates(trial, n_sims: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {}
    for _ in range(n_sims):
        for name, hit in trial(rng).items():
            counts[name] = counts.get(name, 0) + int(hit)
    return {name: c / n_sims for name, c in counts.items()}
