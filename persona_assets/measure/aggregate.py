"""From per-response divergences to per-pair values and N×N matrices.

Input rows (one per response × scoring pair), columns:
  generator, question_index, persona_a, persona_b, js, kl_ab, kl_ba, n_tokens, n_scored_positions
where kl_ab = mean over the response's scored positions of KL(P_a ‖ P_b) and the response was
generated under `generator`. n_tokens is the response's length (the tokens the model generated);
n_scored_positions the positions the means run over: n_tokens under the `generated` scoring rule,
the re-rendered ids after the prompt under `original_template` (`persona_assets.measure.scoring_rule`).

Averaging modes
- "pair_own": pair (A, B) uses only A's and B's own responses. For each question, the value on
  A's response and the value on B's response are averaged (the two directions), then questions
  are averaged. KL(A→B) means KL(P_A ‖ P_B) averaged the same way.
- "all_responses": pair (A, B) averages over every persona's responses (what earlier results
  used). Each question weighs the same in both modes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from persona_assets.measure.responses import pair_value_rows
from persona_assets.constants import ALL_RESPONSES, AVERAGING_MODES, PAIR_OWN  # noqa: F401  (re-exported)

VALUE_COLUMNS = ("js", "kl_ab", "kl_ba")


@dataclass(frozen=True)
class PairMatrices:
    persona_names: list[str]
    js: np.ndarray  # symmetric, zero diagonal
    kl: np.ndarray  # kl[i, j] = KL(P_i ‖ P_j)
    averaging: str

    @property
    def kl_sym(self) -> np.ndarray:
        return (self.kl + self.kl.T) / 2

    @property
    def kl_signed_asym(self) -> np.ndarray:
        """[i, j] = KL(i→j) − KL(j→i)."""
        return self.kl - self.kl.T

    @property
    def kl_asym(self) -> np.ndarray:
        return np.abs(self.kl_signed_asym)

    def to_dict(self) -> dict:
        return {
            "persona_names": list(self.persona_names),
            "averaging": self.averaging,
            "js_matrix": self.js.tolist(),
            "kl_matrix": self.kl.tolist(),
            "kl_sym_matrix": self.kl_sym.tolist(),
            "kl_asym_matrix": self.kl_asym.tolist(),
            "kl_signed_asym_matrix": self.kl_signed_asym.tolist(),
        }


def canonical_pairs(rows: pd.DataFrame, persona_names: list[str]) -> pd.DataFrame:
    """Orient every row so persona_a comes before persona_b in `persona_names` (swapping KLs)."""
    order = {n: k for k, n in enumerate(persona_names)}
    swap = rows["persona_a"].map(order) > rows["persona_b"].map(order)
    out = rows.copy()
    out.loc[swap, ["persona_a", "persona_b"]] = rows.loc[swap, ["persona_b", "persona_a"]].to_numpy()
    out.loc[swap, ["kl_ab", "kl_ba"]] = rows.loc[swap, ["kl_ba", "kl_ab"]].to_numpy()
    return out


def pair_question_table(rows: pd.DataFrame, persona_names: list[str], averaging: str) -> pd.DataFrame:
    """One row per (unordered pair, question): js_sym, kl_ab, kl_ba averaged over the responses the mode uses."""
    if averaging not in AVERAGING_MODES:
        raise ValueError(f"averaging must be one of {AVERAGING_MODES}, got {averaging!r}")
    rows = canonical_pairs(rows, persona_names)
    if averaging == "pair_own":
        own = (rows["generator"] == rows["persona_a"]) | (rows["generator"] == rows["persona_b"])
        rows = rows[own]
    table = (
        rows.groupby(["persona_a", "persona_b", "question_index"], sort=False)[list(VALUE_COLUMNS)]
        .mean()
        .reset_index()
        .rename(columns={"js": "js_sym"})
    )
    table["kl_sym"] = (table["kl_ab"] + table["kl_ba"]) / 2
    return table


def pair_matrices(rows: pd.DataFrame, persona_names: list[str], averaging: str) -> PairMatrices:
    table = pair_question_table(rows, persona_names, averaging)
    per_pair = table.groupby(["persona_a", "persona_b"])[["js_sym", "kl_ab", "kl_ba"]].mean()
    n = len(persona_names)
    index = {name: k for k, name in enumerate(persona_names)}
    js = np.zeros((n, n))
    kl = np.zeros((n, n))
    filled = np.eye(n, dtype=bool)
    for (a, b), values in per_pair.iterrows():
        i, j = index[a], index[b]
        js[i, j] = js[j, i] = values["js_sym"]
        kl[i, j], kl[j, i] = values["kl_ab"], values["kl_ba"]
        filled[i, j] = filled[j, i] = True
    if not filled.all():
        missing = [(persona_names[i], persona_names[j]) for i, j in zip(*np.where(~filled)) if i < j]
        raise ValueError(f"no divergence rows for pairs {missing[:5]}{' …' if len(missing) > 5 else ''}")
    return PairMatrices(list(persona_names), js, kl, averaging)


def upper_triangle_pairs(matrix: np.ndarray, persona_names: list[str], value_name: str) -> pd.DataFrame:
    """The i<j entries of a symmetric matrix as rows (persona_a, persona_b, value)."""
    i, j = np.triu_indices(len(persona_names), k=1)
    return pd.DataFrame(
        {
            "persona_a": [persona_names[k] for k in i],
            "persona_b": [persona_names[k] for k in j],
            value_name: matrix[i, j],
        }
    )


def per_response_table(
    responses: Sequence[Mapping[str, Any]],
    jobs: Sequence[Any],
    values: Sequence[Sequence[Mapping[str, float]]],
    persona_names: list[str],
) -> pd.DataFrame:
    """The input rows above, from each response (generations' record), its job's pairs and their values."""
    return pd.DataFrame(pair_value_rows(responses, jobs, values, persona_names))
