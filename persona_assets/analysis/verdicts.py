"""The kill-gate analysis: the pre-registered verdicts on `AnalysisInputs`, with their evidence.

Discrimination per averaging (std, max/min, CV; the noise floor; the question-bootstrap CIs from
`leakage_correlations` and whether the thresholds lie inside them), redundancy with cosine at
every layer of every cosine set (with the question-bootstrap CI of ρ), and per-question
informativeness; the within-persona baseline (`persona_baseline`) joins the discrimination verdict as
evidence, not as a rule. No dagster import.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from persona_assets.analysis.matrices import AnalysisInputs
from persona_assets.analysis.inference import noise_floor_section
from persona_assets.analysis.kill_criteria import (
    discrimination_verdict,
    label_discrimination,
    label_redundancy,
    redundancy_verdict,
)
from persona_assets.analysis.persona_baseline import add_to_discrimination
from persona_assets.measure.noise_floor import floor_evidence

MIN_PAIRS = 3


def question_informativeness(per_question: pd.DataFrame, *, min_relative_spread: float) -> dict[str, Any]:
    """Per question: the spread of pair JS values, and whether the question discriminates personas.

    A question is flagged when the std of its pair JS values is below `min_relative_spread` × the
    median std over questions, or when its pair ordering does not agree (Spearman ≤ 0) with the
    ordering given by the mean of the other questions.
    """
    wide = per_question.pivot_table(index=["persona_a", "persona_b"], columns="question_index", values="js")
    questions = list(wide.columns)
    stds = wide.std(axis=0, ddof=1)
    median_std = float(stds.median()) if len(stds) else float("nan")
    rows = []
    for q in questions:
        values = wide[q].dropna()
        others = wide.drop(columns=[q]).mean(axis=1).loc[values.index] if len(questions) > 1 else None
        loo = None
        if others is not None and len(values) >= MIN_PAIRS and values.nunique() > 1 and others.nunique() > 1:
            loo = float(pd.Series(values).corr(others, method="spearman"))
        relative = float(stds[q] / median_std) if median_std > 0 else None
        reasons = []
        if relative is not None and relative < min_relative_spread:
            reasons.append(f"spread {relative:.2f}× the median question's (< {min_relative_spread})")
        if loo is not None and loo <= 0:
            reasons.append(f"pair order disagrees with the other questions (ρ = {loo:.2f})")
        mean = float(values.mean())
        rows.append(
            {
                "question_index": int(q),
                "n_pairs": int(len(values)),
                "js_mean": mean,
                "js_std": float(stds[q]),
                "js_min": float(values.min()),
                "js_max": float(values.max()),
                "coefficient_of_variation": float(stds[q]) / mean if mean > 0 else None,
                "relative_spread": relative,
                "spearman_with_other_questions": loo,
                "flagged": bool(reasons),
                "reasons": reasons,
            }
        )
    return {
        "rule": (
            f"flagged when std(pair JS) < {min_relative_spread} × the median over questions, or when the question's "
            "pair "
            "order has Spearman ≤ 0 with the mean of the other questions"
        ),
        "median_question_std": median_std,
        "n_questions": len(questions),
        "flagged_questions": [r["question_index"] for r in rows if r["flagged"]],
        "per_question": rows,
    }


def kill_gate_verdicts(
    inputs: AnalysisInputs,
    correlations: dict[str, Any],
    *,
    min_std: float,
    min_ratio: float,
    max_abs_rho: float,
    min_relative_question_spread: float,
    baseline: dict[str, Any] | None = None,
    baseline_absent: str = "no paraphrase data",
) -> dict[str, Any]:
    """The verdicts with their evidence; `baseline` (the `persona_baseline` value, or None with `baseline_absent`
    saying why there is none) joins the primary discrimination verdict as evidence, never as a rule."""
    upper = np.triu_indices(len(inputs.persona_names), k=1)
    by_averaging = {
        a: discrimination_verdict(js[upper], min_std=min_std, min_ratio=min_ratio) for a, js in inputs.js.items()
    }
    question_bootstrap = correlations.get("question_bootstrap") or {}
    for averaging, verdict in by_averaging.items():
        evidence = floor_evidence(inputs.js[averaging][upper], inputs.noise_floor)
        verdict["evidence"]["noise_floor"] = evidence
        verdict["notes"].append(evidence["note"])
        qb = question_bootstrap.get(averaging) or {}
        label_discrimination(verdict, qb.get("discrimination"))
        if qb.get("pair_differences"):
            verdict["evidence"]["question_uncertainty_of_differences"] = qb["pair_differences"]
    primary = inputs.primary_averaging
    rhos: dict[str, float | None] = {}
    for label, layers in correlations["by_averaging"][primary]["js_vs_cosine"].items():
        for layer, c in layers.items():
            if layer != "centring":
                rhos[f"{label}/{layer}"] = c["spearman_rho"]
    redundancy = redundancy_verdict(rhos, max_abs_rho=max_abs_rho)
    rho_intervals = (question_bootstrap.get(primary) or {}).get("js_vs_cosine") or {}
    label_redundancy(
        redundancy,
        {
            f"{label}/{layer}": c
            for label, block in rho_intervals.items()
            for layer, c in block.items()
            if layer != "centring"
        },
    )
    redundancy["evidence"]["centrings"] = {label: cs.centring for label, cs in inputs.cosine_sets.items()}
    add_to_discrimination(by_averaging[primary], baseline, absent=baseline_absent)
    discrimination = dict(by_averaging[primary])
    discrimination["averaging"] = primary
    return {
        "origin": inputs.origin,
        "averaging": primary,
        "model": inputs.provenance.get("model") or inputs.provenance.get("divergence_metadata", {}).get("model"),
        "noise_floor": noise_floor_section(inputs),
        "discrimination": discrimination,
        "discrimination_by_averaging": by_averaging,
        "redundancy": redundancy,
        "question_informativeness": {
            averaging: question_informativeness(table, min_relative_spread=min_relative_question_spread)
            for averaging, table in inputs.per_question_js.items()
            if not table.empty
        },
    }
