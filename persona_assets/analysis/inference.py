"""Design-respecting tests and question-level uncertainty for the analyses, from `AnalysisInputs`.

`persona_assets.analysis.correlation_report` reports every correlation as before (Spearman/Pearson, scipy p, a
pair or source-cluster bootstrap) and adds, next to it, what this module computes:

- ``mantel``: JS (or KL_sym) vs cosine, permuting persona labels (`permutation_tests.mantel_test`);
- ``persona_permutation`` and ``crossed_bootstrap``: predictor vs directed leakage, permuting the
  leakage labels within role strata, and a two-way (source, target) cluster bootstrap;
- ``permutation_difference`` / ``crossed_bootstrap_difference``: JS vs cosine as leakage predictors;
- ``question_bootstrap``: per-pair SE/CI, the discrimination statistics, ρ(JS, cosine) and the pair
  differences, resampling questions (`question_bootstrap`).
- ``noise_floor_section``: the run's noise floor next to the pair values, with what it covers and
  what it does not.

No dagster import.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from persona_assets.stats import question_bootstrap as qboot
from persona_assets.analysis.matrices import AnalysisInputs
from persona_assets.stats.difference_power import ALPHA as DIFFERENCE_ALPHA
from persona_assets.stats.difference_power import difference_power, strongest_cosine
from persona_assets.measure.noise_floor import floor_evidence, floor_nats
from persona_assets.measure.precision import scoring_precision_nats
from persona_assets.stats.permutation_tests import (
    crossed_bootstrap,
    difference_permutation_test,
    leakage_permutation_test,
    mantel_test,
)


def noise_floor_section(inputs: AnalysisInputs) -> dict[str, Any]:
    """The run's noise floor next to the primary pair JS values, and what falls below it."""
    js = inputs.js[inputs.primary_averaging][np.triu_indices(len(inputs.persona_names), k=1)]
    floor = inputs.noise_floor
    return {
        "averaging": inputs.primary_averaging,
        "js_min": float(np.nanmin(js)) if js.size else None,
        "js_max": float(np.nanmax(js)) if js.size else None,
        **floor_evidence(js, floor),
        "measured": bool(floor.get("measured")),
        "js_rel": floor.get("js_rel"),
        "kl_abs_nats": floor.get("kl_abs_nats"),
        "definition": floor.get("definition"),
        "precision": floor.get("precision"),
    }


def leakage_matrix(inputs: AnalysisInputs) -> np.ndarray:
    """N×N directed leakage [source, target] over the personas of the matrices; NaN where not measured."""
    index = {n: k for k, n in enumerate(inputs.persona_names)}
    m = np.full((len(index), len(index)), np.nan)
    for s, t, r in zip(inputs.leakage["source"], inputs.leakage["target"], inputs.leakage["rate"]):
        if s in index and t in index and s != t:
            m[index[s], index[t]] = float(r)
    return m


def kl_sym_matrix(inputs: AnalysisInputs) -> np.ndarray:
    return (inputs.kl + inputs.kl.T) / 2


def with_mantel(correlation: dict[str, Any], x: np.ndarray, y: np.ndarray, *, n_perm: int, seed: int) -> dict[str, Any]:
    """A correlation dict with its Mantel test added (the pair-bootstrap CI is kept and labelled)."""
    return correlation | {
        "mantel": mantel_test(x, y, n_perm=n_perm, seed=seed),
        "design_note": "pairs share personas: judge significance by mantel.spearman_p, not spearman_p or the "
        "pair-bootstrap CI",
    }


def with_leakage_tests(
    correlation: dict[str, Any],
    predictor: np.ndarray,
    leakage: np.ndarray,
    directed: pd.DataFrame,
    column: str,
    *,
    n_perm: int,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """A predictor-vs-leakage correlation dict with the permutation test and the crossed bootstrap added."""
    return correlation | {
        "persona_permutation": leakage_permutation_test(predictor, leakage, n_perm=n_perm, seed=seed),
        "crossed_bootstrap": crossed_bootstrap(
            directed[column], directed["rate"], directed["source"], directed["target"], n_boot=n_boot, seed=seed
        ),
        "design_note": (
            "directed pairs are crossed (sources × targets): judge significance by persona_permutation.spearman_p and "
            "crossed_bootstrap.spearman_ci95, not spearman_p or the source-clustered CI"
        ),
    }


def directed_matrices(frame: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(predictor, leakage) N×N over every persona of a directed table (source, target, column, rate); NaN elsewhere."""
    names = list(dict.fromkeys([*frame["source"], *frame["target"]]))
    index = {n: k for k, n in enumerate(names)}
    s = frame["source"].map(index).to_numpy()
    t = frame["target"].map(index).to_numpy()
    predictor = np.full((len(names), len(names)), np.nan)
    leakage = np.full((len(names), len(names)), np.nan)
    predictor[s, t] = frame[column].to_numpy(dtype=float)
    leakage[s, t] = frame["rate"].to_numpy(dtype=float)
    return predictor, leakage


def with_directed_table_tests(
    correlation: dict[str, Any], frame: pd.DataFrame, column: str, *, n_perm: int, n_boot: int, seed: int
) -> dict[str, Any]:
    """`with_leakage_tests` for a directed table that is not tied to the N×N matrices (a cosine-vs-leakage file)."""
    predictor, leakage = directed_matrices(frame, column)
    return with_leakage_tests(correlation, predictor, leakage, frame, column, n_perm=n_perm, n_boot=n_boot, seed=seed)


def predictor_difference_tests(
    js: np.ndarray,
    cosine: np.ndarray,
    leakage: np.ndarray,
    directed: pd.DataFrame,
    js_col: str,
    cos_col: str,
    *,
    n_perm: int,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """ρ_S(−JS, leakage) − ρ_S(cosine, leakage): permutation test and crossed-bootstrap CI."""
    permutation = difference_permutation_test(-js, cosine, leakage, n_perm=n_perm, seed=seed)
    boot = crossed_bootstrap(
        -directed[js_col],
        directed["rate"],
        directed["source"],
        directed["target"],
        n_boot=n_boot,
        seed=seed,
        z=directed[cos_col],
    )
    return {
        "permutation_difference": permutation
        | {"definition": "difference = ρ_S(−JS, leakage) − ρ_S(cosine, leakage); > 0: JS predicts better"},
        "crossed_bootstrap_difference": {
            "difference": permutation.get("difference"),
            "spearman_difference_ci95": boot.get("spearman_difference_ci95"),
            "resampling_unit": boot["resampling_unit"],
            "n_boot": boot["n_boot"],
            "seed": boot["seed"],
            "note": boot.get("note"),
        },
    }


def headline_difference_power(inputs: AnalysisInputs, by_averaging: dict[str, Any], *, seed: int) -> dict[str, Any]:
    """The power of the JS-vs-cosine difference test against the strongest cosine, in the primary averaging
    (the comparison the summary headlines)."""
    averaging = inputs.primary_averaging
    rival = strongest_cosine(by_averaging[averaging])
    if rival is None:
        return {"available": False, "note": "no cosine correlates with leakage on these pairs"}
    label, layer = rival
    power = difference_power(
        inputs.js[averaging], inputs.cosine_sets[label].matrices[layer], leakage_matrix(inputs), seed=seed
    )
    return {"available": True, "averaging": averaging, "cosine": f"{label}/{layer}", **power}


# The non-headline comparisons get a cheaper power simulation (MC s.e. of a power of 80%: 0.063).
OTHER_POWER_SIMS, OTHER_POWER_PERMUTATIONS = 40, 99


def difference_power_by_cosine(
    inputs: AnalysisInputs, by_averaging: dict[str, Any], headline: dict[str, Any], *, seed: int
) -> dict[str, Any]:
    """The power of every JS-vs-cosine difference test of the primary averaging that is not significant (p ≥ 0.05),
    so that no "no significant difference" is printed without the smallest difference it could have seen.

    The headline comparison reuses `headline_difference_power`; the others are simulated with
    `OTHER_POWER_SIMS` runs per mix and `OTHER_POWER_PERMUTATIONS` permutations.
    """
    averaging = inputs.primary_averaging
    out: dict[str, Any] = {}
    for label, layers in by_averaging[averaging].get("js_vs_cosine_as_predictors", {}).items():
        for layer, test in layers.items():
            p = (test.get("permutation_difference") or {}).get("p_two_sided") if isinstance(test, dict) else None
            key = f"{label}/{layer}"
            if p is None or p < DIFFERENCE_ALPHA:
                continue
            if headline.get("cosine") == key:
                out[key] = headline
                continue
            power = difference_power(
                inputs.js[averaging],
                inputs.cosine_sets[label].matrices[layer],
                leakage_matrix(inputs),
                n_sims=OTHER_POWER_SIMS,
                n_perm=OTHER_POWER_PERMUTATIONS,
                seed=seed,
            )
            out[key] = {"available": True, "averaging": averaging, "cosine": key, **power}
    return out


def _pair_vector(pairs: pd.DataFrame, names: list[str], matrix: np.ndarray) -> np.ndarray:
    index = {n: k for k, n in enumerate(names)}
    return np.array([matrix[index[a], index[b]] for a, b in zip(pairs["persona_a"], pairs["persona_b"])], dtype=float)


def question_uncertainty(inputs: AnalysisInputs, averaging: str, *, n_boot: int, seed: int) -> dict[str, Any]:
    """The question bootstrap of one averaging's pair JS (and KL where per-question KL exists)."""
    table = inputs.per_question_js.get(averaging)
    if table is None or table.empty:
        return {"available": False, "note": f"no per-question pair JS for {averaging}: the question bootstrap needs it"}
    qb = qboot.question_bootstrap(table, "js", n_boot=n_boot, seed=seed)
    names = inputs.persona_names
    matrix_values = _pair_vector(qb.pairs, names, inputs.js[averaging])
    gap = float(np.nanmax(np.abs(matrix_values - qb.values))) if qb.values.size else 0.0
    cosines = {
        label: {layer: _pair_vector(qb.pairs, names, m) for layer, m in cs.matrices.items()}
        for label, cs in inputs.cosine_sets.items()
    }
    out: dict[str, Any] = {
        "available": True,
        **qb.describe(),
        "matrix_gap": gap,
        "pairs": qboot.pair_intervals(qb),
        "discrimination": qboot.discrimination_intervals(qb),
        "js_vs_cosine": {
            label: {"centring": inputs.cosine_sets[label].centring, **qboot.spearman_intervals(qb, by_layer)}
            for label, by_layer in cosines.items()
        },
        "pair_differences": qboot.differences_against_uncertainty(
            qb, floor_nats(inputs.noise_floor), scoring_precision_nats(inputs.noise_floor)
        ),
        "notes": [
            "pair value = mean over questions of the per-question pair JS; the matrix agrees within matrix_gap",
            "ρ(JS, cosine): cosine held fixed (its per-question hidden states are not kept); only JS is resampled",
        ],
    }
    kl_table = inputs.per_question_kl.get(averaging)
    if kl_table is not None and not kl_table.empty:
        kl = kl_table.assign(kl_sym=(kl_table["kl_ab"] + kl_table["kl_ba"]) / 2)
        out["kl"] = {
            name: qboot.pair_intervals(qboot.question_bootstrap(kl, name, n_boot=n_boot, seed=seed))
            for name in ("kl_ab", "kl_ba", "kl_sym")
        }
    else:
        out["kl"] = None
        out["notes"].append("per-question KL not available for this averaging: no KL question bootstrap")
    return out
