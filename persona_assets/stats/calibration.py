"""Calibration of the tests by simulation: under a null with persona / source / target effects each
design-respecting test should reject at its nominal 5%, and it should detect a planted relation.

Used by `benchmarks/calibration.py` (≥ 500 simulations per scenario, committed output) and by a
small seeded version in the test suite. Each scenario draws fresh effects per simulation:

- unordered pairs (JS vs cosine): X_ij = u_i + u_j + e_ij for each matrix, persona effects u
  independent between the two matrices under the null; planted: cosine += beta · z(JS);
- directed pairs (predictor vs leakage): JS as above over all personas; leakage
  L_st = a_s + b_t + e_st over sources × other personas; the null scenarios switch the source
  effect a, the target effect b, or both on; planted: L += beta · z(−JS);
- difference of two predictors: L depends on −JS + cosine equally under the null (each scaled by
  its known sd), on −JS alone when planted.

Each simulation reports, per test, whether it rejected at α = 0.05 (p < 0.05, or a 95% CI that
excludes 0). The older tests that assume independent pairs are run too, for comparison.

No dagster import.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

from persona_assets.stats.permutation_tests import (
    ci_excludes,
    crossed_bootstrap,
    difference_permutation_test,
    leakage_permutation_test,
    mantel_test,
)
from persona_assets.stats.question_bootstrap import pair_intervals, question_bootstrap
from persona_assets.stats.correlate import MRR, correlate, dependent_correlation_test

ALPHA = 0.05


@dataclass(frozen=True)
class Settings:
    n_personas: int = 12
    n_sources: int = 5
    n_leakage_personas: int = 11
    n_perm: int = 199
    n_boot: int = 199
    persona_sd: float = 1.0
    noise_sd: float = 1.0


def _z(v: np.ndarray) -> np.ndarray:
    return (v - v.mean()) / v.std()


def _population_scale(s: Settings) -> float:
    """The sd of one entry of `_persona_matrix` (two persona effects and the symmetrised noise).

    Signals are scaled by this known sd, not by the sample's: a sample standardisation would make
    z(A) − z(B) exactly uncorrelated with z(A) + z(B) in every sample, which no real null does.
    """
    return math.sqrt(2 * s.persona_sd**2 + s.noise_sd**2)


def _persona_matrix(rng: np.random.Generator, n: int, s: Settings, persona_sd: float | None = None) -> np.ndarray:
    u = rng.normal(scale=s.persona_sd if persona_sd is None else persona_sd, size=n)
    e = rng.normal(scale=s.noise_sd, size=(n, n))
    m = u[:, None] + u[None, :] + (e + e.T) / math.sqrt(2)
    np.fill_diagonal(m, 0.0)
    return m


def unordered_trial(rng: np.random.Generator, s: Settings, beta: float) -> dict[str, bool]:
    n = s.n_personas
    js, cos = _persona_matrix(rng, n, s), _persona_matrix(rng, n, s)
    i, j = np.triu_indices(n, k=1)
    if beta:
        planted = np.zeros((n, n))
        planted[i, j] = _z(js[i, j])
        cos = cos + beta * (planted + planted.T)
    seed = int(rng.integers(2**31))
    mantel = mantel_test(js, cos, n_perm=s.n_perm, seed=seed)
    old = correlate(js[i, j], cos[i, j], n_boot=s.n_boot, seed=seed)
    return {
        "mantel_p": mantel["spearman_p"] < ALPHA,
        "scipy_spearman_p (independent pairs)": old.spearman_p < ALPHA,
        "pair_bootstrap_ci (independent pairs)": bool(ci_excludes(old.spearman_ci95)),
    }


def _directed(rng: np.random.Generator, s: Settings, source_effects: bool, target_effects: bool):
    n, k = s.n_leakage_personas, s.n_sources
    js = _persona_matrix(rng, n, s)
    cos = _persona_matrix(rng, n, s)
    a = rng.normal(scale=s.persona_sd, size=n) if source_effects else np.zeros(n)
    b = rng.normal(scale=s.persona_sd, size=n) if target_effects else np.zeros(n)
    leak = np.full((n, n), np.nan)
    leak[:k] = a[:k, None] + b[None, :] + rng.normal(scale=s.noise_sd, size=(k, n))
    np.fill_diagonal(leak, np.nan)
    src, tgt = np.nonzero(np.isfinite(leak))
    return js, cos, leak, src, tgt


def directed_trial(
    rng: np.random.Generator, s: Settings, beta: float, *, source_effects: bool = True, target_effects: bool = True
) -> dict[str, bool]:
    js, _, leak, src, tgt = _directed(rng, s, source_effects, target_effects)
    if beta:
        leak[src, tgt] += beta * _z(-js[src, tgt])
    seed = int(rng.integers(2**31))
    x, y = js[src, tgt], leak[src, tgt]
    permutation = leakage_permutation_test(js, leak, n_perm=s.n_perm, seed=seed)
    crossed = crossed_bootstrap(x, y, src, tgt, n_boot=s.n_boot, seed=seed)
    old = correlate(x, y, clusters=src, n_boot=s.n_boot, seed=seed)
    return {
        "persona_permutation_p": permutation["spearman_p"] < ALPHA,
        "crossed_bootstrap_ci": bool(ci_excludes(crossed["spearman_ci95"])),
        "scipy_spearman_p (independent pairs)": old.spearman_p < ALPHA,
        "source_cluster_bootstrap_ci (ignores targets)": bool(ci_excludes(old.spearman_ci95)),
    }


def difference_trial(rng: np.random.Generator, s: Settings, beta: float, *, planted: bool) -> dict[str, bool]:
    """beta: strength of the leakage signal; planted: only −JS carries it (else both equally)."""
    js, cos, leak, src, tgt = _directed(rng, s, True, True)
    scale = _population_scale(s)
    signal = -js[src, tgt] / scale if planted else (-js[src, tgt] + cos[src, tgt]) / (scale * math.sqrt(2))
    leak[src, tgt] += beta * signal
    seed = int(rng.integers(2**31))
    y = leak[src, tgt]
    permutation = difference_permutation_test(-js, cos, leak, n_perm=s.n_perm, seed=seed)
    crossed = crossed_bootstrap(-js[src, tgt], y, src, tgt, n_boot=s.n_boot, seed=seed, z=cos[src, tgt])
    r_a = stats.spearmanr(-js[src, tgt], y)[0]
    r_b = stats.spearmanr(cos[src, tgt], y)[0]
    r_ab = stats.spearmanr(-js[src, tgt], cos[src, tgt])[0]
    mrr = dependent_correlation_test(r_a, r_b, r_ab, len(y), method=MRR)
    return {
        "permutation_difference_p": permutation["p_two_sided"] < ALPHA,
        "crossed_bootstrap_difference_ci": bool(ci_excludes(crossed["spearman_difference_ci95"])),
        "meng_rosenthal_rubin_p (independent pairs)": mrr["p_two_sided"] < ALPHA,
    }


def question_trial(rng: np.random.Generator, s: Settings, n_questions: int = 20) -> dict[str, bool]:
    """Does each pair's question-bootstrap 95% CI miss the pair's true mean? (a 'rejection' = a miss)

    Per (pair, question): true pair mean + a question effect shared by all pairs + pair × question
    noise; the true mean is the expectation over questions (question effects have mean 0).
    """
    n = s.n_personas
    i, _ = np.triu_indices(n, k=1)
    true = 0.02 + 0.01 * rng.gamma(2.0, size=i.size)
    q_effect = rng.normal(scale=0.003, size=n_questions)
    values = true[:, None] + q_effect[None, :] + rng.normal(scale=0.006, size=(i.size, n_questions))
    import pandas as pd

    table = pd.DataFrame(
        {
            "persona_a": np.repeat(np.arange(i.size), n_questions),
            "persona_b": 0,
            "question_index": np.tile(np.arange(n_questions), i.size),
            "js": values.ravel(),
        }
    )
    qb = question_bootstrap(table, "js", n_boot=s.n_boot, seed=int(rng.integers(2**31)))
    k = int(rng.integers(i.size))  # one pair per simulation keeps the trials independent
    row = pair_intervals(qb)[k]
    lo, hi = row["ci95"]
    p_lo, p_hi = row["ci95_percentile"]
    return {
        "pair_js_ci95_misses_true_mean (t interval, reported)": bool(true[k] < lo or true[k] > hi),
        "pair_js_percentile_ci_misses_true_mean (for comparison)": bool(true[k] < p_lo or true[k] > p_hi),
    }


Trial = Callable[[np.random.Generator], dict[str, bool]]


def scenarios(
    s: Settings, *, beta_matrix: float = 1.0, beta_leak: float = 1.0, beta_difference: float = 1.5
) -> dict[str, tuple[str, Trial]]:
    """name -> (what a rejection rate means there: 'size' under a null, 'power' when planted, trial)."""
    return {
        "js_vs_cosine: null, persona effects": ("size", lambda r: unordered_trial(r, s, 0.0)),
        "js_vs_cosine: planted relation": ("power", lambda r: unordered_trial(r, s, beta_matrix)),
        "js_vs_leakage: null, source effects": ("size", lambda r: directed_trial(r, s, 0.0, target_effects=False)),
        "js_vs_leakage: null, target effects": ("size", lambda r: directed_trial(r, s, 0.0, source_effects=False)),
        "js_vs_leakage: null, source + target effects": ("size", lambda r: directed_trial(r, s, 0.0)),
        "js_vs_leakage: planted relation": ("power", lambda r: directed_trial(r, s, beta_leak)),
        "difference: null, equal predictors (no leakage signal)": (
            "size",
            lambda r: difference_trial(r, s, 0.0, planted=False),
        ),
        "difference: null, equal predictors (signal, ρ ≈ 0.45)": (
            "size",
            lambda r: difference_trial(r, s, beta_difference, planted=False),
        ),
        "difference: planted, JS only": ("power", lambda r: difference_trial(r, s, beta_difference, planted=True)),
        "question bootstrap: pair-JS CI": ("size", lambda r: question_trial(r, s)),
    }


def rejection_rates(trial: Trial, n_sims: int, seed: int) -> dict[str, float]:
    """Share of ``n_sims`` seeded simulations in which each test rejected."""
    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {}
    for _ in range(n_sims):
        for name, rejected in trial(rng).items():
            counts[name] = counts.get(name, 0) + int(rejected)
    return {name: c / n_sims for name, c in counts.items()}


def monte_carlo_se(rate: float, n_sims: int) -> float:
    return math.sqrt(rate * (1 - rate) / n_sims)
