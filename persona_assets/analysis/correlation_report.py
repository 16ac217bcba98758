"""The analyses of the study, from `AnalysisInputs` to JSON-ready dicts with descriptive keys.

One function per analysis asset — `cosine_precheck`, `leakage_correlations`, `kill_gate_verdicts`
— so the in-graph run and a re-analysis of earlier results go through exactly the same code.
Every correlation is a `statistics.Correlation` dict; cosines of different centrings stay in
separate, labelled sections and are never pooled or compared inside one test.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from persona_assets.analysis import inference
from persona_assets.analysis.matrices import PAIR_OWN, AnalysisInputs
from persona_assets.analysis.pair_tables import (  # noqa: F401  (figures read them through this module too)
    cosine_column,
    directed_pair_table,
    js_column,
    pair_lengths,
    unordered_pair_table,
)
from persona_assets.runs.errors import InputError
from persona_assets.analysis.inference import noise_floor_section
from persona_assets.stats.permutation_tests import DEFAULT_N_PERMUTATIONS
from persona_assets.stats.correlate import (
    MRR,
    STEIGER,
    between_within_decomposition,
    correlate,
    dependent_correlation_test,
    partial_correlation,
    sign_agreement,
    within_group_correlations,
)
from persona_assets.analysis.cosine_report import (  # noqa: F401  (callers read the precheck here too)
    MIN_PAIRS,
    cosine_precheck,
    cosine_set_summary,
    precheck_from_detail,
)


def _predictor_comparison(js: pd.Series, cos: pd.Series, rate: pd.Series) -> dict[str, Any]:
    """JS vs cosine as predictors of leakage on exactly the same pairs (Spearman, MRR and Steiger)."""
    frame = pd.DataFrame({"js": js.to_numpy(), "cos": cos.to_numpy(), "rate": rate.to_numpy()}).dropna()
    n = len(frame)
    out: dict[str, Any] = {
        "n": n,
        "coefficient": "spearman",
        "direction": "JS enters as a similarity (−JS); z > 0 means JS predicts leakage more strongly than cosine",
    }
    if n <= MIN_PAIRS:
        out["note"] = "too few pairs for the dependent-correlation test"
        return out
    rho = frame.corr(method="spearman")
    r_js, r_cos, r_js_cos = float(rho.loc["js", "rate"]), float(rho.loc["cos", "rate"]), float(rho.loc["js", "cos"])
    out |= {"spearman_js_leakage": r_js, "spearman_cosine_leakage": r_cos, "spearman_js_cosine": r_js_cos}
    for method, key in ((MRR, "meng_rosenthal_rubin"), (STEIGER, "steiger")):
        try:
            out[key] = dependent_correlation_test(-r_js, r_cos, -r_js_cos, n, method=method)
        except InputError as exc:
            out[key] = {"z": None, "p_two_sided": None, "note": str(exc)}
    out["note"] = (
        "MRR/Steiger p-values assume independent pairs; pairs share personas: judge the difference by "
        "permutation_difference.p_two_sided and crossed_bootstrap_difference"
    )
    return out


def _within_source(x: pd.Series, rate: pd.Series, source: pd.Series) -> dict[str, Any]:
    return {
        "per_source": within_group_correlations(x, rate, source),
        "decomposition_spearman": between_within_decomposition(x, rate, source, method="spearman"),
        "decomposition_pearson": between_within_decomposition(x, rate, source, method="pearson"),
    }


def _kl_asymmetry(directed: pd.DataFrame, persona_names: list[str], *, n_boot: int, seed: int) -> dict[str, Any]:
    order = {n: k for k, n in enumerate(persona_names)}
    both = directed.dropna(subset=["rate_reverse"])
    # One row per unordered pair: the other direction carries the same information with both signs
    # flipped, and counting it again would double n.
    one = both[both["source"].map(order) < both["target"].map(order)]
    signed_kl = one["kl_source_target"] - one["kl_target_source"]
    signed_leak = one["rate"] - one["rate_reverse"]
    return {
        "definition": (
            "signed: KL(s‖t) − KL(t‖s) vs leak(s→t) − leak(t→s); absolute: |…| vs |…|; one row per unordered "
            "pair with leakage measured in both directions, oriented by persona order"
        ),
        "n_unordered_pairs_with_both_directions": int(len(one)),
        "signed": correlate(signed_kl, signed_leak, n_boot=n_boot, seed=seed).to_dict(),
        "absolute": correlate(signed_kl.abs(), signed_leak.abs(), n_boot=n_boot, seed=seed).to_dict(),
        "sign_agreement": sign_agreement(signed_kl, signed_leak),
        "note": "the signed correlation depends on the orientation convention; sign_agreement does not",
    }


def _leakage_section(
    directed: pd.DataFrame, inputs: AnalysisInputs, averaging: str, *, n_boot: int, seed: int, n_perm: int
) -> dict[str, Any]:
    js = directed[js_column(averaging)]
    rate, source = directed["rate"], directed["source"]
    leakage, js_matrix = inference.leakage_matrix(inputs), inputs.js[averaging]
    tests = {"leakage": leakage, "directed": directed, "n_perm": n_perm, "n_boot": n_boot, "seed": seed}
    section: dict[str, Any] = {
        "js_vs_leakage": inference.with_leakage_tests(
            correlate(js, rate, clusters=source, n_boot=n_boot, seed=seed).to_dict(),
            js_matrix,
            column=js_column(averaging),
            **tests,
        ),
        "cosine_vs_leakage_same_pairs": {},
        "js_vs_cosine_as_predictors": {},
        "within_source": {"js": _within_source(js, rate, source), "cosine": {}},
    }
    for label, cs in inputs.cosine_sets.items():
        section["cosine_vs_leakage_same_pairs"][label] = {"centring": cs.centring}
        section["js_vs_cosine_as_predictors"][label] = {"centring": cs.centring}
        section["within_source"]["cosine"][label] = {"centring": cs.centring}
        for layer in cs.layers:
            cos_col = cosine_column(label, layer)
            cos = directed[cos_col]
            section["cosine_vs_leakage_same_pairs"][label][layer] = inference.with_leakage_tests(
                correlate(cos, rate, clusters=source, n_boot=n_boot, seed=seed).to_dict(),
                cs.matrices[layer],
                column=cos_col,
                **tests,
            )
            section["js_vs_cosine_as_predictors"][label][layer] = _predictor_comparison(
                js, cos, rate
            ) | inference.predictor_difference_tests(
                js_matrix,
                cs.matrices[layer],
                leakage,
                directed,
                js_column(averaging),
                cos_col,
                n_perm=n_perm,
                n_boot=n_boot,
                seed=seed,
            )
            section["within_source"]["cosine"][label][layer] = _within_source(cos, rate, source)
    return section


def length_confound(inputs: AnalysisInputs, directed: pd.DataFrame, *, n_boot: int, seed: int) -> dict[str, Any]:
    """Per-response JS vs response length, and the headline JS–leakage correlation with length controlled."""
    if inputs.per_response is None:
        return {"available": False, "note": inputs.length_note}
    per = inputs.per_response
    response_id = per["generator"].astype(str) + "/q" + per["question_index"].astype(str)
    by_response = (
        per.groupby(["generator", "question_index"])
        .agg(js=("js", "mean"), n_tokens=("n_tokens", "first"))
        .reset_index()
    )
    out: dict[str, Any] = {
        "available": True,
        "note": inputs.length_note,
        "per_response_mean_js_vs_tokens": correlate(
            by_response["js"], by_response["n_tokens"], n_boot=n_boot, seed=seed
        ).to_dict(),
        "per_response_pair_js_vs_tokens": correlate(
            per["js"], per["n_tokens"], clusters=response_id, n_boot=n_boot, seed=seed, cluster_unit="response-cluster"
        ).to_dict(),
        "definitions": {
            "per_response_mean_js_vs_tokens": "one row per response: its JS averaged over the pairs it was scored for, "
            "vs its length",
            "per_response_pair_js_vs_tokens": "one row per (response, pair); bootstrap clustered by response",
            "pair_mean_tokens": "mean length of the responses a pair's JS averages over",
        },
    }
    averaging = inputs.primary_averaging
    if len(directed) < MIN_PAIRS or "pair_mean_tokens" not in directed:
        out["js_leakage_length_controlled"] = {"note": "fewer than 3 directed pairs with leakage rates"}
        return out
    js = directed[js_column(averaging)]
    controlled: dict[str, Any] = {
        "averaging": averaging,
        "uncontrolled": correlate(
            js, directed["rate"], clusters=directed["source"], n_boot=n_boot, seed=seed
        ).to_dict(),
        "length_vs_leakage": correlate(
            directed["pair_mean_tokens"], directed["rate"], clusters=directed["source"], n_boot=n_boot, seed=seed
        ).to_dict(),
        "js_vs_length": correlate(js, directed["pair_mean_tokens"], n_boot=n_boot, seed=seed).to_dict(),
    }
    if directed["pair_mean_tokens"].nunique() < 2:
        controlled["note"] = (
            "every pair averages over responses of the same mean length"
            + (" (all_responses: the same responses)" if averaging != PAIR_OWN else "")
            + ": length cannot confound the comparison between pairs; partial correlation not computed"
        )
    else:
        controlled["partial_spearman"] = partial_correlation(
            js, directed["rate"], directed["pair_mean_tokens"], method="spearman"
        )
        controlled["partial_pearson"] = partial_correlation(
            js, directed["rate"], directed["pair_mean_tokens"], method="pearson"
        )
    out["js_leakage_length_controlled"] = controlled
    return out


def leakage_correlations(
    inputs: AnalysisInputs, *, n_boot: int, seed: int, n_perm: int = DEFAULT_N_PERMUTATIONS
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """All correlations; returns (result, unordered pair table, directed pair table).

    Next to each correlation: its design-respecting test (`inference`: Mantel / persona-label
    permutation with `n_perm` permutations, crossed bootstrap with `n_boot` resamples), and per
    averaging the question bootstrap (`question_bootstrap`, `n_boot` resamples of the questions).
    """
    pairs = unordered_pair_table(inputs)
    directed = directed_pair_table(inputs)
    primary_set = next(iter(inputs.cosine_sets), None)
    result: dict[str, Any] = {
        "origin": inputs.origin,
        "averaging": inputs.primary_averaging,
        "averagings": inputs.averagings,
        "kl_averaging": inputs.kl_averaging,
        "persona_names": inputs.persona_names,
        "n_pairs": int(len(pairs)),
        "unit": "unordered persona pairs (bootstrap resamples pairs)",
        "expected_layers": inputs.expected_layers,
        "cosine_sets": cosine_set_summary(inputs, pairs),
        "primary_cosine_set": primary_set,
        "layers": inputs.cosine_sets[primary_set].layers if primary_set else [],
        "cosine_centring": inputs.cosine_sets[primary_set].centring if primary_set else None,
        "notes": list(inputs.notes),
        "noise_floor": noise_floor_section(inputs),
        "by_averaging": {},
    }
    for averaging in inputs.averagings:
        result["by_averaging"][averaging] = {
            "js_vs_cosine": {
                label: {"centring": cs.centring}
                | {
                    layer: inference.with_mantel(
                        correlate(
                            pairs[js_column(averaging)], pairs[cosine_column(label, layer)], n_boot=n_boot, seed=seed
                        ).to_dict(),
                        inputs.js[averaging],
                        cs.matrices[layer],
                        n_perm=n_perm,
                        seed=seed,
                    )
                    for layer in cs.layers
                }
                for label, cs in inputs.cosine_sets.items()
            }
        }
    result["js_averagings_agree"] = (
        correlate(
            pairs[js_column(inputs.averagings[0])], pairs[js_column(inputs.averagings[1])], n_boot=n_boot, seed=seed
        ).to_dict()
        if len(inputs.averagings) > 1
        else None
    )
    result["kl_sym_vs_cosine"] = {
        label: {"centring": cs.centring, "averaging": inputs.kl_averaging}
        | {
            layer: inference.with_mantel(
                correlate(pairs["kl_sym"], pairs[cosine_column(label, layer)], n_boot=n_boot, seed=seed).to_dict(),
                inference.kl_sym_matrix(inputs),
                cs.matrices[layer],
                n_perm=n_perm,
                seed=seed,
            )
            for layer in cs.layers
        }
        for label, cs in inputs.cosine_sets.items()
    }
    # The primary (averaging, cosine set) under short keys: what the kill gate and figures read.
    primary = result["by_averaging"][inputs.primary_averaging]["js_vs_cosine"]
    result["js_vs_cosine"] = {layer: c for layer, c in primary.get(primary_set, {}).items() if layer != "centring"}

    if len(directed) < MIN_PAIRS:
        result["leakage"] = {
            "available": False,
            "note": f"only {len(directed)} directed pairs among these personas have leakage rates (need ≥ 3); "
            f"{inputs.leakage_note}",
        }
    else:
        by_averaging = {
            a: _leakage_section(directed, inputs, a, n_boot=n_boot, seed=seed, n_perm=n_perm) for a in inputs.averagings
        }
        result["leakage"] = {
            "available": True,
            "source_of_rates": inputs.leakage_note,
            "n_directed_pairs": int(len(directed)),
            "n_sources": int(directed["source"].nunique()),
            "unit": (
                "directed (source, target) pairs; spearman_ci95: bootstrap clustered by source; persona_permutation "
                "and "
                "crossed_bootstrap respect the crossed design"
            ),
            "averaging": inputs.primary_averaging,
            **by_averaging[inputs.primary_averaging],
            "by_averaging": by_averaging,
            "kl_averaging": inputs.kl_averaging,
            "kl_source_target_vs_leakage": inference.with_leakage_tests(
                correlate(
                    directed["kl_source_target"],
                    directed["rate"],
                    clusters=directed["source"],
                    n_boot=n_boot,
                    seed=seed,
                ).to_dict(),
                inputs.kl,
                inference.leakage_matrix(inputs),
                directed,
                "kl_source_target",
                n_perm=n_perm,
                n_boot=n_boot,
                seed=seed,
            ),
            "kl_asymmetry": _kl_asymmetry(directed, inputs.persona_names, n_boot=n_boot, seed=seed),
        }
        headline = inference.headline_difference_power(inputs, by_averaging, seed=seed)
        result["leakage"]["difference_power"] = headline
        result["leakage"]["difference_power_by_cosine"] = inference.difference_power_by_cosine(
            inputs, by_averaging, headline, seed=seed
        )
    result["length_confound"] = length_confound(inputs, directed, n_boot=n_boot, seed=seed)
    result["question_bootstrap"] = {
        a: inference.question_uncertainty(inputs, a, n_boot=n_boot, seed=seed) for a in inputs.averagings
    }
    result["n_permutations"] = int(n_perm)
    return result, pairs, directed


# The kill gates live in their own module; re-exported so callers keep one entry point.
from persona_assets.analysis.verdicts import kill_gate_verdicts, question_informativeness  # noqa: E402, F401
