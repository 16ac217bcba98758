"""From the per-token pass's records to tables: lens values per layer, position buckets, vocabulary terms.

Every table is aggregated like the output divergences (`aggregate`): a pair's value is the mean over
questions of the mean over the responses its averaging uses (pair-own: the two personas' own
responses; all-responses: every response), each response counted once whatever its length.

Position buckets: edges e_0 = 1 < e_1 < … (1-based response positions); bucket k holds positions
e_k … e_{k+1} − 1, the last one e_K and beyond (default 1–4, 5–16, 17–64, 65–256, 257+). A response
contributes to a bucket only where it has tokens; its bucket means, weighted by their token counts,
give back its response mean (`bucket_sum_gaps`).

Vocabulary terms: for pair (A, B), the term of token v in KL(A‖B) is Σ P_A(v)·log(P_A(v)/P_B(v)),
summed over every position of the responses the averaging uses (a term may be negative; all terms
sum to Σ KL). Each response keeps only its top k terms per direction (`top_k_stored`), so a token's
pair-level term counts the responses where it was among those k: `VOCABULARY_SHARE_DEFINITION`.
No dagster import.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from persona_assets.constants import PAIR_OWN
from persona_assets.measure.aggregate import PairMatrices, pair_matrices

DEFAULT_BUCKET_EDGES = (1, 5, 17, 65, 257)
VOCABULARY_SHARE_DEFINITION = (
    "term = Σ over the pair's responses (as its averaging uses them) and their positions of P_A(v)·log(P_A(v)/P_B(v)) "
    "for KL(A‖B) (P_B(v)·log(P_B(v)/P_A(v)) for KL(B‖A)), counting a response only where v is among its top "
    "{k} terms; share = term / Σ KL over the same positions (the whole vocabulary). A lower bound of the token's "
    "full term where it is positive; the shares of the listed tokens need not sum to 1 (other tokens, negative terms)."
)


def check_bucket_edges(edges: Sequence[int]) -> list[int]:
    """Edges as a list: start at 1 and strictly increase (ValueError otherwise)."""
    edges = [int(e) for e in edges]
    if not edges or edges[0] != 1 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"position bucket edges must start at 1 and strictly increase, got {edges}")
    return edges


def bucket_labels(edges: Sequence[int]) -> list[str]:
    edges = check_bucket_edges(edges)
    labels = [f"{lo}–{hi - 1}" if hi - 1 > lo else f"{lo}" for lo, hi in zip(edges, edges[1:])]
    return [*labels, f"{edges[-1]}+"]


def position_buckets(values: Sequence[float], edges: Sequence[int]) -> list[tuple[str, int, float]]:
    """(label, number of positions, mean) of every bucket the per-token `values` reach, in order."""
    edges, labels = check_bucket_edges(edges), bucket_labels(edges)
    values = np.asarray(values, dtype=float)
    bounds = [e - 1 for e in edges] + [max(len(values), edges[-1] - 1)]
    out = []
    for label, lo, hi in zip(labels, bounds, bounds[1:]):
        part = values[lo:hi]
        if part.size:
            out.append((label, int(part.size), float(part.mean())))
    return out


def _rows(
    responses: Sequence[Mapping[str, Any]], jobs: Sequence[Any], records: Sequence[Sequence[Mapping[str, Any]]], names
):
    """(response, job, (a, b), record) for every scoring pair of every response."""
    for response, job, found in zip(responses, jobs, records):
        for (a, b), record in zip(job.pairs, found):
            yield response, job, (names[a], names[b]), record


def lens_response_table(responses, jobs, records, names: Sequence[str]) -> pd.DataFrame:
    """One row per (response, scoring pair, lens layer): the response-mean JS, KL(a‖b), KL(b‖a) at that layer."""
    rows = []
    for response, job, (a, b), record in _rows(responses, jobs, records, names):
        for layer, values in record["lens"].items():
            rows.append(
                {
                    "generator": response["persona"],
                    "question_index": response["question_index"],
                    "persona_a": a,
                    "persona_b": b,
                    "layer": int(layer),
                    **{k: values[k] for k in ("js", "kl_ab", "kl_ba")},
                    "n_tokens": response["n_tokens"],
                    "n_scored_positions": len(job.response_ids),
                }
            )
    return pd.DataFrame(rows)


def lens_matrices(table: pd.DataFrame, names: list[str], averaging: str) -> dict[int, PairMatrices]:
    """Per lens layer, the N×N matrices, aggregated exactly like the output divergences."""
    return {
        int(layer): pair_matrices(part.drop(columns="layer"), names, averaging)
        for layer, part in table.groupby("layer", sort=True)
    }


def bucket_table(responses, jobs, records, names: Sequence[str], edges: Sequence[int]) -> pd.DataFrame:
    """One row per (response, scoring pair, position bucket): its positions and mean output JS there,
    with the response's mean (`response_js`, the pass's own mean over all positions) and length."""
    rows = []
    for response, job, (a, b), record in _rows(responses, jobs, records, names):
        lens = record["lens"]
        response_js = lens[max(lens, key=int)]["js"]
        for label, n, mean in position_buckets(record["js_tokens"], edges):
            rows.append(
                {
                    "generator": response["persona"],
                    "question_index": response["question_index"],
                    "persona_a": a,
                    "persona_b": b,
                    "bucket": label,
                    "n_positions": n,
                    "js": mean,
                    "response_js": response_js,
                    "response_positions": len(record["js_tokens"]),
                }
            )
    return pd.DataFrame(rows)


def bucket_sum_gaps(table: pd.DataFrame) -> np.ndarray:
    """Per (response, pair): |Σ_b n_b·mean_b / Σ_b n_b − response mean| (0 up to float rounding), and whether
    the bucket counts add up to the response's positions (a gap of inf where they do not)."""
    keys = ["generator", "question_index", "persona_a", "persona_b"]
    weighted = table.assign(weighted=table["js"] * table["n_positions"])
    grouped = weighted.groupby(keys).agg(
        weighted=("weighted", "sum"),
        n=("n_positions", "sum"),
        mean=("response_js", "first"),
        total=("response_positions", "first"),
    )
    gaps = np.abs(grouped["weighted"] / grouped["n"] - grouped["mean"]).to_numpy()
    return np.where(grouped["n"].to_numpy() == grouped["total"].to_numpy(), gaps, np.inf)


def _own(frame: pd.DataFrame, averaging: str) -> pd.DataFrame:
    if averaging != PAIR_OWN:
        return frame
    return frame[(frame["generator"] == frame["persona_a"]) | (frame["generator"] == frame["persona_b"])]


def _oriented(frame: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    order = {n: k for k, n in enumerate(names)}
    swap = frame["persona_a"].map(order) > frame["persona_b"].map(order)
    out = frame.copy()
    out.loc[swap, ["persona_a", "persona_b"]] = frame.loc[swap, ["persona_b", "persona_a"]].to_numpy()
    return out


def bucket_pair_question_table(table: pd.DataFrame, names: Sequence[str], averaging: str) -> pd.DataFrame:
    """One row per (unordered pair, question, bucket): the mean bucket JS over the responses the averaging uses
    that reach the bucket, and their positions there."""
    rows = _oriented(_own(table, averaging), names)
    return (
        rows.groupby(["persona_a", "persona_b", "question_index", "bucket"], sort=False)
        .agg(js=("js", "mean"), n_positions=("n_positions", "sum"), n_responses=("js", "size"))
        .reset_index()
    )


def vocabulary_table(
    responses, jobs, records, names: Sequence[str], averaging: str, top_k: int
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Per unordered pair and direction, the top_k vocabulary terms summed over its responses, with their share.

    Returns (rows: persona_a, persona_b, direction ("A‖B" = KL(P_A‖P_B)), rank, token_id, term, share, total_kl;
    per (response, pair, direction) the gap between the whole vector's sum and Σ_t KL: the check's input).
    """
    order = {n: k for k, n in enumerate(names)}
    terms: dict[tuple[str, str, str], dict[int, float]] = defaultdict(lambda: defaultdict(float))
    totals: dict[tuple[str, str, str], float] = defaultdict(float)
    gaps = []
    for response, _, (a, b), record in _rows(responses, jobs, records, names):
        for direction in ("ab", "ba"):
            stored = record[f"terms_{direction}"]
            kl_sum = record[f"kl_{direction}_sum"]
            gaps.append({"direction": direction, "term_sum": stored["sum"], "kl_sum": kl_sum})
        if averaging == PAIR_OWN and response["persona"] not in (a, b):
            continue
        flipped = order[a] > order[b]
        pair = (b, a) if flipped else (a, b)
        for direction in ("ab", "ba"):
            canonical = {"ab": "ba", "ba": "ab"}[direction] if flipped else direction
            key = (*pair, canonical)
            stored = record[f"terms_{direction}"]
            totals[key] += stored["sum"]
            for token, value in zip(stored["ids"], stored["values"]):
                terms[key][int(token)] += float(value)
    rows = []
    for (a, b, direction), by_token in terms.items():
        total = totals[(a, b, direction)]
        best = sorted(by_token.items(), key=lambda item: -item[1])[:top_k]
        for rank, (token, value) in enumerate(best, start=1):
            rows.append(
                {
                    "persona_a": a,
                    "persona_b": b,
                    "direction": "A‖B" if direction == "ab" else "B‖A",
                    "rank": rank,
                    "token_id": token,
                    "term": value,
                    "share": value / total if total > 0 else None,
                    "total_kl": total,
                }
            )
    return pd.DataFrame(rows), gaps


def term_sum_gaps(gaps: Sequence[Mapping[str, float]]) -> tuple[np.ndarray, np.ndarray]:
    """(|Σ_v term − Σ_t KL|, Σ_t KL) of every (response, pair, direction)."""
    term = np.array([g["term_sum"] for g in gaps], dtype=float)
    kl = np.array([g["kl_sum"] for g in gaps], dtype=float)
    return np.abs(term - kl), kl
