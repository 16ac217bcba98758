"""Power of the JS-vs-cosine difference test at a run's own design, by simulation under its fitted noise.

"No significant difference" (a large permutation p) says little when the test could not have
seen a difference anyway: at the study's design, with the two predictors correlated ≈ 0.8, its
power for differences like 0.70 vs 0.55 is 11–42%. `difference_power` answers: how large a
difference of Spearman ρ would this test have detected with 80% power here?

Model, on normal scores (so the ranks of the data are kept): leakage = signal + noise. The fitted
signal is the least-squares fit of leakage on both predictors; the fitted noise is the residual
matrix, which keeps the run's source, target and dual-role persona effects. A simulated run
mixes the predictors, signal_θ = θ·z(−JS) + (1 − θ)·z(cosine), rescaled to the fitted signal's
variance, and adds the residual matrix with its persona labels permuted within role strata. For
each θ on a grid the true difference is the mean simulated ρ(−JS, leakage) − ρ(cosine, leakage),
and the power is the share of runs whose permutation p < 0.05. No dagster import.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from persona_assets.stats.helpers import json_float
from persona_assets.stats.permutation_tests import leakage_roles, permutation_p_value, persona_permutations
from persona_assets.stats.permuted_rows import permuted_spearmans, rearranged_ranks

TARGET_POWER = 0.8
ALPHA = 0.05
MIXES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def _normal_scores(v: np.ndarray) -> np.ndarray:
    return stats.norm.ppf((stats.rankdata(v) - 0.5) / v.size)


def simulated_difference(
    leakage: np.ndarray,
    s: np.ndarray,
    t: np.ndarray,
    roles: list[str],
    a: np.ndarray,
    b: np.ndarray,
    fixed_ranks: tuple[np.ndarray, np.ndarray],
    *,
    n_perm: int,
    seed: int,
) -> tuple[float, float] | None:
    """(difference, p_two_sided) of `difference_permutation_test` for a simulated leakage matrix measured exactly on
    the pairs (s, t), whose predictors' values there are ``a`` and ``b`` (ranks ``fixed_ranks``) and whose personas'
    strata are ``roles``: what does not change from one simulated run to the next is passed in, not set up again.
    The same floats as the test itself (tests/stats/test_difference_power.py); None where it is undefined."""
    perms, exact = persona_permutations(roles, n_perm, np.random.default_rng(seed))
    values = leakage[perms[:, s], perms[:, t]]
    spearmans = permuted_spearmans(values, rearranged_ranks(leakage, s, t, perms), a, b, fixed_ranks)
    if spearmans is None:
        return None
    diff = spearmans[0] - spearmans[1]
    difference = json_float(diff[0])
    return None if difference is None else (difference, permutation_p_value(diff, exact))


def difference_power(
    js: np.ndarray, cosine: np.ndarray, leakage: np.ndarray, *, n_sims: int = 100, n_perm: int = 199, seed: int = 0
) -> dict[str, Any]:
    """The smallest difference of ρ on each side that the permutation difference test detects with 80% power."""
    measured = np.isfinite(leakage) & np.isfinite(js) & np.isfinite(cosine) & ~np.eye(leakage.shape[0], dtype=bool)
    s, t = np.nonzero(measured)
    out: dict[str, Any] = {
        "target_power": TARGET_POWER,
        "alpha": ALPHA,
        "n_sims_per_mix": n_sims,
        "n_permutations": n_perm,
        "seed": seed,
        "method": __doc__.split("\n\n")[1].replace("\n", " "),
    }
    if s.size < 6:
        return out | {"minimal_detectable_difference": None, "note": "fewer than 6 measured pairs: power not simulated"}
    za, zb, zy = _normal_scores(-js[s, t]), _normal_scores(cosine[s, t]), _normal_scores(leakage[s, t])
    design = np.column_stack([np.ones(s.size), za, zb])
    coef, *_ = np.linalg.lstsq(design, zy, rcond=None)
    fitted = design @ coef
    residual = np.full(leakage.shape, np.nan)
    residual[s, t] = zy - fitted
    signal_sd = float(np.std(fitted))
    rng = np.random.default_rng(seed)
    roles = leakage_roles(np.where(measured, leakage, np.nan))  # a simulated run is measured on the same pairs
    perms, _ = persona_permutations(roles, n_sims, rng)
    a, b = -js[s, t], cosine[s, t]
    fixed_ranks = (stats.rankdata(a), stats.rankdata(b))
    rows = []
    for theta in MIXES:
        mix = theta * za + (1 - theta) * zb
        signal = mix * (signal_sd / mix.std()) if mix.std() > 0 else mix
        differences, rejections = [], 0
        for k in range(n_sims):
            # Few personas: the permutations were enumerated (identity first) and may be fewer than n_sims: cycle.
            p = perms[1 + k % (len(perms) - 1)] if len(perms) > 1 else perms[0]
            noise = np.nan_to_num(residual[p[s], p[t]])
            sim = np.full(leakage.shape, np.nan)
            sim[s, t] = signal + noise
            # difference_permutation_test(-js, cosine, sim, ...) with its set-up shared by the runs: the same floats.
            test = simulated_difference(
                sim, s, t, roles, a, b, fixed_ranks, n_perm=n_perm, seed=int(rng.integers(2**31))
            )
            if test is None:
                continue
            differences.append(test[0])
            rejections += int(test[1] < ALPHA)
        if differences:
            power = rejections / len(differences)
            rows.append({"js_weight": theta, "true_difference": float(np.mean(differences)), "power": power})
    out["by_mix"] = rows
    detectable = {
        "js_better": [r for r in rows if r["true_difference"] > 0 and r["power"] >= TARGET_POWER],
        "cosine_better": [r for r in rows if r["true_difference"] < 0 and r["power"] >= TARGET_POWER],
    }
    out["minimal_detectable_difference"] = {
        side: (min((abs(r["true_difference"]) for r in found), default=None)) for side, found in detectable.items()
    }
    out["largest_difference_simulated"] = {
        "js_better": max((r["true_difference"] for r in rows), default=None),
        "cosine_better": min((r["true_difference"] for r in rows), default=None),
    }
    out["monte_carlo_se_at_80_percent"] = float(np.sqrt(0.8 * 0.2 / n_sims))
    return out


def strongest_cosine(section: dict[str, Any]) -> tuple[str, str] | None:
    """(cosine set, layer) whose ρ with leakage on the same pairs as JS is strongest (the fairest rival)."""
    candidates = [
        ((set_name, layer), stats_["spearman_rho"])
        for set_name, layers in section.get("cosine_vs_leakage_same_pairs", {}).items()
        for layer, stats_ in layers.items()
        if isinstance(stats_, dict) and stats_.get("spearman_rho") is not None
    ]
    return max(candidates, key=lambda c: abs(c[1]))[0] if candidates else None


def power_text(power: dict[str, Any] | None) -> str:
    """One clause for the summary: the smallest |difference of ρ| detected with 80% power, per side."""
    if not power or not power.get("minimal_detectable_difference"):
        return "power not simulated"
    found, largest = power["minimal_detectable_difference"], power["largest_difference_simulated"]
    parts = []
    for side, label in (("js_better", "JS better"), ("cosine_better", "cosine better")):
        on_side = [r["power"] for r in power["by_mix"] if (r["true_difference"] > 0) == (side == "js_better")]
        best = max(on_side, default=None)
        if found.get(side) is not None:
            parts.append(f"{label} by ≥ {found[side]:.2f}")
        elif largest.get(side) is not None and best is not None:
            parts.append(f"{label}: none up to {abs(largest[side]):.2f} (power ≤ {best:.0%})")
    return f"differences of ρ detectable with 80% power at this design: {'; '.join(parts)}"
