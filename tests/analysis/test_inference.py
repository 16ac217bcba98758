"""This project's own run through the new inference: per-question JS and KL of both averagings reach
the question bootstrap, every correlation carries its design-respecting test, the verdicts their call."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from persona_assets.analysis import correlation_report as analyses
from persona_assets.measure.aggregate import pair_matrices, pair_question_table
from persona_assets.analysis.matrices import ALL_RESPONSES, PAIR_OWN, AnalysisInputs, inputs_from_run

NAMES = ["a", "b", "c", "d", "e", "f"]
N_QUESTIONS = 5


def _run_values(averaging: str):
    rng = np.random.default_rng(0)
    effect = rng.uniform(0.01, 0.05, size=len(NAMES))
    rows = []
    for g in NAMES:
        for q in range(N_QUESTIONS):
            for i, a in enumerate(NAMES):
                for j in range(i + 1, len(NAMES)):
                    base = effect[i] + effect[NAMES.index(NAMES[j])] + rng.uniform(0, 0.01)
                    rows.append(
                        {
                            "generator": g,
                            "question_index": q,
                            "persona_a": a,
                            "persona_b": NAMES[j],
                            "js": base,
                            "kl_ab": 2 * base + 0.001,
                            "kl_ba": 2 * base,
                            "n_tokens": 10 + q,
                        }
                    )
    per_response = pd.DataFrame(rows)
    matrices = pair_matrices(per_response, NAMES, averaging)
    table = pair_question_table(per_response, NAMES, averaging)
    divergence = {
        "method": {"averaging": averaging},
        **matrices.to_dict(),
        "per_pair_question": table.to_dict(orient="records"),
        "model": {"model": "test"},
        "noise_floor": {"measured": True, "js_abs_nats": 1e-4},
    }
    cos = {
        "persona_names": NAMES,
        "centring": "run mean",
        "layers": [1, 2],
        "cosine_matrices": {
            f"layer{k}": (1 - 10 * matrices.js + rng.normal(scale=0.01, size=matrices.js.shape)).tolist()
            for k in (2, 1)
        },
    }
    leak_rows = [[s, t, float(rng.uniform())] for s in NAMES[:3] for t in NAMES if t != s]
    leakage = {"available": True, "rows": leak_rows, "path": "test"}
    return divergence, cos, leakage, per_response


def test_all_responses_run_bootstraps_both_averagings_with_kl() -> None:
    divergence, cos, leakage, per_response = _run_values(ALL_RESPONSES)
    inputs = inputs_from_run(divergence, cos, leakage, per_response)
    assert set(inputs.per_question_js) == {ALL_RESPONSES, PAIR_OWN} and set(inputs.per_question_kl) == {
        ALL_RESPONSES,
        PAIR_OWN,
    }
    assert AnalysisInputs.from_dict(inputs.to_dict()).per_question_kl[PAIR_OWN].equals(inputs.per_question_kl[PAIR_OWN])
    result, _, _ = analyses.leakage_correlations(inputs, n_boot=100, seed=0, n_perm=100)
    for averaging in (ALL_RESPONSES, PAIR_OWN):
        qb = result["question_bootstrap"][averaging]
        assert qb["available"] and qb["n_questions"] == N_QUESTIONS and qb["matrix_gap"] < 1e-12
        kl = {(r["persona_a"], r["persona_b"]): r["kl_ab"] for r in qb["kl"]["kl_ab"]}
        assert kl[("a", "b")] == pytest.approx(pair_matrices(per_response, NAMES, averaging).kl[0, 1])
    mantel = result["js_vs_cosine"]["layer2"]["mantel"]
    assert mantel["exact"] is False and mantel["n_permutations"] == 100 and mantel["n"] == 15
    leak = result["leakage"]
    assert leak["js_vs_leakage"]["persona_permutation"]["n"] == 15
    assert leak["kl_source_target_vs_leakage"]["crossed_bootstrap"]["n_sources"] == 3
    assert leak["js_vs_cosine_as_predictors"]["in_graph"]["layer1"]["permutation_difference"]["n"] == 15
    floor = result["question_bootstrap"][ALL_RESPONSES]["pair_differences"]
    assert floor["n_below_noise_floor"] is not None and floor["n_findings"] <= floor["n_pair_differences"]
    verdicts = analyses.kill_gate_verdicts(
        inputs, result, min_std=0.05, min_ratio=3.0, max_abs_rho=0.8, min_relative_question_spread=0.5
    )
    assert verdicts["discrimination"]["call"] in ("decided by the data", "too close to call")
    assert set(verdicts["redundancy"]["question_bootstrap"]) == {"in_graph/layer2", "in_graph/layer1"}
    # Layers were given deepest first: the rise summary still goes from layer1 to layer2.
    precheck = analyses.cosine_precheck(inputs, n_boot=50, seed=0, n_perm=50)
    assert (precheck["in_graph"]["first_layer"], precheck["in_graph"]["last_layer"]) == ("layer1", "layer2")
