"""The persona-pair tables the analyses and figures read: one row per unordered or directed pair.

Every predictor is a column; column names come from `js_column` / `cosine_column`, so a table and the
analysis reading it agree. No dagster import.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from persona_assets.analysis.matrices import PAIR_OWN, AnalysisInputs


def cosine_column(cosine_set: str, layer: str) -> str:
    return f"cos__{cosine_set}__{layer}"


def js_column(averaging: str) -> str:
    return f"js__{averaging}"


def unordered_pair_table(inputs: AnalysisInputs) -> pd.DataFrame:
    """One row per unordered pair: JS per averaging, KL_sym, and every cosine (NaN where absent)."""
    names = inputs.persona_names
    i, j = np.triu_indices(len(names), k=1)
    frame = pd.DataFrame({"persona_a": np.asarray(names)[i], "persona_b": np.asarray(names)[j]})
    for averaging, js in inputs.js.items():
        frame[js_column(averaging)] = js[i, j]
    frame["kl_sym"] = (inputs.kl[i, j] + inputs.kl[j, i]) / 2
    for label, cs in inputs.cosine_sets.items():
        for layer, m in cs.matrices.items():
            frame[cosine_column(label, layer)] = m[i, j]
    return frame


def pair_lengths(inputs: AnalysisInputs) -> np.ndarray | None:
    """N×N mean response length (tokens) of the responses each pair's JS averages over, or None."""
    if inputs.per_response is None:
        return None
    per = inputs.per_response.drop_duplicates(["generator", "question_index"])
    mean_len = per.groupby("generator")["n_tokens"].mean()
    lengths = np.array([mean_len.get(n, np.nan) for n in inputs.persona_names], dtype=float)
    if inputs.primary_averaging == PAIR_OWN:
        return (lengths[:, None] + lengths[None, :]) / 2
    return np.full((len(lengths), len(lengths)), float(per["n_tokens"].mean()))


def directed_pair_table(inputs: AnalysisInputs) -> pd.DataFrame:
    """Directed (source, target) pairs among the personas with a leakage rate, with every predictor."""
    names = inputs.persona_names
    index = {n: k for k, n in enumerate(names)}
    leak = inputs.leakage
    known = leak[leak["source"].isin(index) & leak["target"].isin(index) & (leak["source"] != leak["target"])]
    rates = {(s, t): float(r) for s, t, r in zip(known["source"], known["target"], known["rate"])}
    lengths = pair_lengths(inputs)
    rows = []
    for (source, target), rate in rates.items():
        s, t = index[source], index[target]
        row: dict[str, Any] = {
            "source": source,
            "target": target,
            "rate": rate,
            "rate_reverse": rates.get((target, source), np.nan),
            "kl_source_target": inputs.kl[s, t],
            "kl_target_source": inputs.kl[t, s],
        }
        for averaging, js in inputs.js.items():
            row[js_column(averaging)] = js[s, t]
        for label, cs in inputs.cosine_sets.items():
            for layer, m in cs.matrices.items():
                row[cosine_column(label, layer)] = m[s, t]
        if lengths is not None:
            row["pair_mean_tokens"] = lengths[s, t]
        rows.append(row)
    return pd.DataFrame(rows)
