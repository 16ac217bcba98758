"""Pair JS against the within-persona yardstick: is a pair's difference larger than rewording one prompt?

Definitions (all in nats, all aggregated like the output JS: response means over tokens, then
means over the persona's paraphrases, then over questions):
- within(A): persona A's responses teacher-forced under A's prompt and under each paraphrase of it,
  JS between the two distributions (`persona_assets.measure.paraphrase_scoring`).
- level(A, B) = (within(A) + within(B)) / 2, the within-persona level of a pair.
- ratio(A, B) = JS(A, B) / level(A, B).
- A pair *exceeds* the within-persona level beyond question-level uncertainty when
  JS(A, B) − level(A, B) > t(Q−1, 0.975)·√(Q/(Q−1))·SE, SE the question-bootstrap SD of that
  difference: questions resampled with replacement, one draw shared by every pair and persona
  (`persona_assets.stats.question_bootstrap`, the rule of its pair CIs). It lies *below* when
  level − JS exceeds the same margin: the two personas differ less than one persona reworded.

Evidence next to the discrimination verdict, not a kill rule. No dagster import.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from persona_assets.stats.question_bootstrap import basic_ci, question_bootstrap, t_multiplier

NOT_MEASURED = "no within-persona baseline was measured"
EVIDENCE_LABEL = "within-persona baseline (evidence, not a kill rule)"
DEFINITION = (
    "within(A): JS between persona A's responses teacher-forced under A's prompt and under a paraphrase of it, "
    "averaged like the output JS (tokens, then paraphrases, then questions); "
    "level(A, B) = (within(A) + within(B)) / 2; ratio = JS(A, B) / level(A, B)"
)
RULE = (
    "a pair exceeds the within-persona level when JS − level > t(Q−1, 0.975)·√(Q/(Q−1)) × the question-bootstrap SE "
    "of JS − level (one draw of questions shared by all pairs and personas); below when level − JS exceeds it"
)


def not_measured(reason: str) -> dict[str, Any]:
    """The asset's value when nothing was measured: says so plainly, with why."""
    return {"measured": False, "reason": reason, "read_first": f"{NOT_MEASURED}: {reason}"}


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def baseline_comparison(
    pair_question: pd.DataFrame,
    within_question: pd.DataFrame,
    *,
    n_boot: int,
    seed: int,
    pair_value: str = "js_sym",
) -> dict[str, Any]:
    """Per persona its within-persona JS (with a question-bootstrap CI), per pair the ratio and the call, and the share.

    `pair_question`: one row per (persona_a, persona_b, question_index) with `pair_value` (the output JS per
    question, `divergence_per_pair_question`); `within_question`: one row per (persona, question_index) with `js`
    (`paraphrase_scoring.within_persona_per_question`). Pairs whose two personas both have a within value are compared.
    """
    measured = list(dict.fromkeys(within_question["persona"]))
    if not measured:
        return not_measured("no persona has paraphrases")
    keep = pair_question["persona_a"].isin(measured) & pair_question["persona_b"].isin(measured)
    pairs = pair_question.loc[keep, ["persona_a", "persona_b", "question_index", pair_value]]
    pairs = pairs.rename(columns={pair_value: "js"})
    within = within_question.assign(persona_a=within_question["persona"]).rename(columns={"persona": "persona_b"})
    within = within[["persona_a", "persona_b", "question_index", "js"]]
    # One bootstrap over the pairs and the personas' (A, A) rows: the same question draw for both.
    qb = question_bootstrap(pd.concat([pairs, within], ignore_index=True), "js", n_boot=n_boot, seed=seed)
    index = {(a, b): k for k, (a, b) in enumerate(zip(qb.pairs["persona_a"], qb.pairs["persona_b"]))}
    values, draws = qb.values, qb.draws
    multiplier = t_multiplier(qb.n_questions)
    personas = [_persona_row(p, values[index[(p, p)]], draws[:, index[(p, p)]], multiplier) for p in measured]
    rows = [
        _pair_row(a, b, values, draws, index, multiplier)
        for (a, b) in index
        if a != b  # the (A, A) entries are the within values
    ]
    return _summary(personas, rows, qb.n_questions, qb.describe())


def _se(samples: np.ndarray) -> float:
    finite = samples[np.isfinite(samples)]
    return float(finite.std(ddof=1)) if finite.size > 1 else math.nan


def _persona_row(persona: str, value: float, samples: np.ndarray, multiplier: float) -> dict[str, Any]:
    se = _se(samples)
    half = multiplier * se
    return {
        "persona": persona,
        "within_js": float(value),
        "se": _number(se),
        "ci95": [_number(value - half), _number(value + half)],
    }


def _pair_row(
    a: str, b: str, values: np.ndarray, draws: np.ndarray, index: Mapping[tuple[str, str], int], multiplier: float
) -> dict[str, Any]:
    k, ka, kb = index[(a, b)], index[(a, a)], index[(b, b)]
    js, level = float(values[k]), float((values[ka] + values[kb]) / 2)
    level_draws = (draws[:, ka] + draws[:, kb]) / 2
    difference_se = _se(draws[:, k] - level_draws)
    margin = multiplier * difference_se
    ratio = js / level if level > 0 else math.inf
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio_draws = np.where(level_draws > 0, draws[:, k] / level_draws, np.nan)
    return {
        "persona_a": a,
        "persona_b": b,
        "js": js,
        "within_a": float(values[ka]),
        "within_b": float(values[kb]),
        "within_level": level,
        "ratio": _number(ratio),
        "ratio_ci95": basic_ci(ratio, ratio_draws, "log") if math.isfinite(ratio) else None,
        "difference": js - level,
        "difference_se": _number(difference_se),
        "exceeds_within": bool(math.isfinite(margin) and js - level > margin),
        "below_within": bool(math.isfinite(margin) and level - js > margin),
    }


def _summary(
    personas: list[dict[str, Any]], rows: list[dict[str, Any]], n_questions: int, bootstrap: dict[str, Any]
) -> dict[str, Any]:
    within = np.array([p["within_js"] for p in personas])
    ratios = np.array([r["ratio"] for r in rows if r["ratio"] is not None], dtype=float)
    decided = n_questions >= 2 and bootstrap["n_boot"] > 1 and bool(rows)
    n_exceeding = sum(r["exceeds_within"] for r in rows)
    out: dict[str, Any] = {
        "measured": True,
        "definition": DEFINITION,
        "rule": RULE,
        "n_personas": len(personas),
        "n_pairs": len(rows),
        "n_questions": n_questions,
        "within_js_min": float(within.min()),
        "within_js_max": float(within.max()),
        "within_js_mean": float(within.mean()),
        "ratio_median": float(np.median(ratios)) if ratios.size else None,
        "ratio_min": float(ratios.min()) if ratios.size else None,
        "ratio_max": float(ratios.max()) if ratios.size else None,
        "n_pairs_with_zero_level": len(rows) - int(ratios.size),
        "n_exceeding": int(n_exceeding) if decided else None,
        "n_below": int(sum(r["below_within"] for r in rows)) if decided else None,
        "share_exceeding": n_exceeding / len(rows) if decided else None,
        "question_bootstrap": bootstrap,
        "personas": personas,
        "pairs": rows,
    }
    if not decided:
        out["note"] = (
            "fewer than two personas with paraphrases: no pair to compare"
            if not rows
            else "one question: the question-level uncertainty cannot be estimated, so no pair is called"
            if n_questions < 2
            else "one bootstrap resample: the question-level uncertainty cannot be estimated, so no pair is called"
        )
    out["read_first"] = read_first_line(out)
    return out


def read_first_line(baseline: Mapping[str, Any]) -> str:
    """The one line to read first: the within-persona range, the ratio and the share of pairs above it."""
    if not baseline.get("measured"):
        return f"{NOT_MEASURED}: {baseline.get('reason', 'unknown')}"
    n = baseline["n_personas"]
    line = (
        f"rewording a prompt moves its own persona's output by JS {baseline['within_js_min']:.3g}–"
        f"{baseline['within_js_max']:.3g} nats ({n} persona{'s' if n != 1 else ''})"
    )
    if baseline["ratio_median"] is not None:
        line += (
            f"; pair JS / within-persona level: median {baseline['ratio_median']:.3g}× "
            f"(range {baseline['ratio_min']:.3g}–{baseline['ratio_max']:.3g}×)"
        )
    if baseline["share_exceeding"] is None:
        return line + f"; {baseline.get('note', 'no pair called')}"
    return (
        line + f"; {baseline['n_exceeding']}/{baseline['n_pairs']} pairs exceed it beyond question-level uncertainty"
        f" ({baseline['n_below']} below it)"
    )


def add_to_discrimination(
    verdict: dict[str, Any], baseline: Mapping[str, Any] | None, *, absent: str
) -> dict[str, Any]:
    """The baseline as evidence and one note of the discrimination verdict (never changes `killed`).

    `absent`: why there is no baseline when `baseline` is None (e.g. earlier results without paraphrase data).
    """
    if baseline is None or not baseline.get("measured"):
        reason = absent if baseline is None else baseline.get("reason", absent)
        verdict["evidence"]["within_persona_baseline"] = {"measured": False, "reason": reason}
        verdict["notes"].append(f"{EVIDENCE_LABEL}: not measured — {reason}")
        return verdict
    keys = ("n_pairs", "n_exceeding", "n_below", "share_exceeding", "ratio_median", "ratio_min", "ratio_max")
    verdict["evidence"]["within_persona_baseline"] = {
        "measured": True,
        **{key: baseline[key] for key in keys},
        "within_js_min": baseline["within_js_min"],
        "within_js_max": baseline["within_js_max"],
        "rule": baseline["rule"],
    }
    verdict["notes"].append(f"{EVIDENCE_LABEL}: {read_first_line(baseline)}")
    return verdict


def pair_table(baseline: Mapping[str, Any], columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The per-pair rows as a table (empty when nothing was measured)."""
    rows = pd.DataFrame(baseline.get("pairs") or [])
    return rows if columns is None or rows.empty else rows[list(columns)]
