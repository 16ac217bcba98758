"""Reports of the per-token pass: divergence through depth (logit lens) and where in the response it sits.

`layer_report`: per lens layer, the pair JS against the output's, against cosine at that layer (Mantel)
and against leakage (persona-label permutation, crossed bootstrap), with cosine vs leakage at the same
layer next to it: the tests the output JS gets (`analysis.inference`).
`profile_report`: per pair and position bucket, the mean JS with its question-bootstrap 95% CI, and
the pairs' mean profile. No dagster import.
"""

from __future__ import annotations

import re

from typing import Any

import numpy as np
import pandas as pd

from persona_assets.analysis.inference import with_leakage_tests, with_mantel
from persona_assets.stats import question_bootstrap as qboot
from persona_assets.stats.correlate import correlate

# A layer "orders the pairs like the output" from this Spearman ρ(layer JS, output JS) on.
SAME_ORDER_RHO = 0.9
MIN_DIRECTED_PAIRS = 3


def _upper(matrix: np.ndarray) -> np.ndarray:
    return matrix[np.triu_indices(matrix.shape[0], k=1)]


def _directed(names: list[str], leakage: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The directed pairs with a rate among `names` (source, target, rate, s, t) and the N×N leakage matrix."""
    index = {n: k for k, n in enumerate(names)}
    known = leakage[leakage["source"].isin(index) & leakage["target"].isin(index)]
    known = known[known["source"] != known["target"]].drop_duplicates(["source", "target"])
    frame = pd.DataFrame(
        {
            "source": known["source"].to_numpy(),
            "target": known["target"].to_numpy(),
            "rate": known["rate"].to_numpy(dtype=float),
        }
    )
    frame["s"] = frame["source"].map(index)
    frame["t"] = frame["target"].map(index)
    matrix = np.full((len(names), len(names)), np.nan)
    matrix[frame["s"].to_numpy(dtype=int), frame["t"].to_numpy(dtype=int)] = frame["rate"].to_numpy()
    return frame, matrix


def _vs_leakage(
    predictor: np.ndarray, directed: pd.DataFrame, leakage: np.ndarray, *, n_boot: int, seed: int, n_perm: int
) -> dict[str, Any]:
    frame = directed.assign(value=predictor[directed["s"].to_numpy(dtype=int), directed["t"].to_numpy(dtype=int)])
    correlation = correlate(frame["value"], frame["rate"], clusters=frame["source"], n_boot=n_boot, seed=seed)
    return with_leakage_tests(
        correlation.to_dict(), predictor, leakage, frame, "value", n_perm=n_perm, n_boot=n_boot, seed=seed
    )


def layer_report(
    lens_js: dict[int, np.ndarray],
    names: list[str],
    cosine: dict[str, np.ndarray],
    leakage: pd.DataFrame,
    *,
    n_boot: int,
    seed: int,
    n_perm: int,
) -> dict[str, Any]:
    """Per layer (keys "layer<L>", by depth; the last is the output): pair JS summary and its correlations.

    `lens_js`: layer → N×N pair JS. `cosine`: "layer<L>" → N×N centred cosine (where measured).
    `leakage`: source, target, rate (may be empty).
    """
    layers = sorted(lens_js)
    output = lens_js[layers[-1]]
    directed, leak = _directed(names, leakage)
    has_leakage = len(directed) >= MIN_DIRECTED_PAIRS
    by_layer: dict[str, Any] = {}
    for layer in layers:
        js = lens_js[layer]
        upper = _upper(js)
        entry: dict[str, Any] = {
            "layer": layer,
            "pair_js_mean": float(upper.mean()),
            "pair_js_min": float(upper.min()),
            "pair_js_max": float(upper.max()),
            "js_vs_output": with_mantel(
                correlate(upper, _upper(output), n_boot=n_boot, seed=seed).to_dict(),
                js,
                output,
                n_perm=n_perm,
                seed=seed,
            ),
        }
        cos = cosine.get(f"layer{layer}")
        entry["js_vs_cosine"] = (
            with_mantel(
                correlate(upper, _upper(cos), n_boot=n_boot, seed=seed).to_dict(), js, cos, n_perm=n_perm, seed=seed
            )
            if cos is not None
            else {"note": f"no cosine measured at layer {layer}"}
        )
        if has_leakage:
            entry["js_vs_leakage"] = _vs_leakage(js, directed, leak, n_boot=n_boot, seed=seed, n_perm=n_perm)
            entry["cosine_vs_leakage"] = (
                _vs_leakage(cos, directed, leak, n_boot=n_boot, seed=seed, n_perm=n_perm)
                if cos is not None
                else {"note": f"no cosine measured at layer {layer}"}
            )
        by_layer[f"layer{layer}"] = entry
    same_order = [
        layer
        for layer in layers
        if (by_layer[f"layer{layer}"]["js_vs_output"].get("spearman_rho") or -1.0) >= SAME_ORDER_RHO
    ]
    return {
        "layers": layers,
        "output_layer": layers[-1],
        "by_layer": by_layer,
        "first_layer_ordering_pairs_like_output": same_order[0] if same_order else None,
        "same_order_rule": f"Spearman ρ(layer pair JS, output pair JS) ≥ {SAME_ORDER_RHO} over unordered pairs",
        "leakage": {
            "available": has_leakage,
            "n_directed_pairs": int(len(directed)),
            "note": None if has_leakage else f"{len(directed)} directed pairs with leakage rates (need ≥ 3)",
        },
    }


def profile_report(per_question: pd.DataFrame, labels: list[str], *, n_boot: int, seed: int) -> dict[str, Any]:
    """Per bucket: every pair's mean JS with its question-bootstrap CI, and the mean over pairs.

    `per_question`: persona_a, persona_b, question_index, bucket, js, n_positions (`bucket_pair_question_table`).
    """
    pairs: list[dict[str, Any]] = []
    by_bucket: dict[str, Any] = {}
    for label in labels:
        part = per_question[per_question["bucket"] == label]
        if part.empty:
            by_bucket[label] = {"n_pairs": 0, "note": "no response reaches this bucket"}
            continue
        qb = qboot.question_bootstrap(part, "js", n_boot=n_boot, seed=seed)
        positions = part.groupby(["persona_a", "persona_b"])["n_positions"].sum()
        for row in qboot.pair_intervals(qb):
            pairs.append({**row, "bucket": label, "n_positions": int(positions[(row["persona_a"], row["persona_b"])])})
        by_bucket[label] = {
            "n_pairs": int(len(qb.pairs)),
            "pair_mean_js": float(np.mean(qb.values)),
            "n_questions": int(qb.n_questions),
        }
    return {
        "buckets": labels,
        "by_bucket": by_bucket,
        "pairs": pairs,
        "ci_rule": qboot.PAIR_CI_RULE,
        "unit": qboot.UNIT,
    }


def _g(value: float | None, digits: int = 3) -> str:
    return "undefined" if value is None else f"{value:.{digits}g}"


def depth_headline(layer_divergences: dict[str, Any]) -> str:
    """The line to read first of layer_divergences: pair JS through depth, where the output's order appears,
    and (with leakage data) where lens JS tracks leakage best."""
    report = layer_divergences["report"]
    layers = report["by_layer"]
    means = " → ".join(f"L{e['layer']} {_g(e['pair_js_mean'])}" for e in layers.values())
    line = (
        f"mean pair JS through depth {means} nats (L{report['output_layer']} = output); pairs ordered like the output "
        f"(ρ ≥ {SAME_ORDER_RHO}) from layer {report['first_layer_ordering_pairs_like_output']}"
    )
    if not report["leakage"]["available"]:
        return line + "; no leakage data"
    best = max(
        (e for e in layers.values() if (e.get("js_vs_leakage") or {}).get("spearman_rho") is not None),
        key=lambda e: abs(e["js_vs_leakage"]["spearman_rho"]),
        default=None,
    )
    if best is not None:
        section = best["js_vs_leakage"]
        p = (section.get("persona_permutation") or {}).get("spearman_p")
        rho = section["spearman_rho"]
        line += f"; strongest ρ(lens JS, leakage) {rho:+.2f} (permutation p = {_g(p, 2)}) at L{best['layer']}"
    return line


def profile_headline(divergence_profiles: dict[str, Any]) -> str:
    """The line to read first of divergence_profiles: mean pair JS per position bucket, and the top token of
    the most divergent pair."""
    by_bucket = divergence_profiles["by_bucket"]
    # In position order: the JSON keeps its keys sorted as text ("17–64" before "1–4").
    in_order = sorted(by_bucket.items(), key=lambda item: int(re.match(r"\d+", item[0]).group()))
    means = ", ".join(f"{label}: {_g(b['pair_mean_js'])}" for label, b in in_order if b.get("n_pairs"))
    line = f"mean pair JS by response position {means} nats"
    a, b = divergence_profiles["extremes"]["most_divergent"]
    top = [
        row
        for row in divergence_profiles["vocabulary"]
        if row["persona_a"] == a and row["persona_b"] == b and row["rank"] == 1
    ]
    if top:
        row = max(top, key=lambda r: r["share"] if r["share"] is not None else -1.0)
        share = f"{row['share']:.0%}" if row["share"] is not None else "undefined"
        kl = f"KL({a}‖{b})" if row["direction"] == "A‖B" else f"KL({b}‖{a})"
        line += f"; most divergent pair {a}/{b}: top token {row['token']!r}, {share} of {kl}"
    return line
