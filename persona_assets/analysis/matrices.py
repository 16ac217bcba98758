"""The inputs of the analysis half of the graph, in one shape whichever run produced them.

`AnalysisInputs` holds what the analyses need: pair JS matrices (one per averaging, labelled),
the KL matrix (with its averaging), cosine matrices grouped into *cosine sets* (one set per
centring, never merged), directed leakage rates, per-question pair JS, and — when the run kept
them — per-response JS with response lengths.

Two builders fill it:
- `inputs_from_run`: from this project's own asset values (divergence_matrices, persona_cosine,
  leakage_rates) and the per-response table the divergence step writes;
- `earlier_results.inputs_from_legacy_dir`: from a folder laid out like the earlier study's results
  (divergence_matrices.json, cosine_leakage_correlation.json, cosine_<N>_l<L>.json, marker_eval/).

`to_dict` / `from_dict` make it a JSON asset value (NaN travels as null).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from persona_assets.runs.errors import InputError
from persona_assets.measure.noise_floor import UNKNOWN_FLOOR_NOTE, not_measured

from persona_assets.constants import ALL_RESPONSES, PAIR_OWN  # noqa: E402  (re-exported)

RUN = "run"
LEGACY = "legacy"

# The cosine set computed by this project's own run (label kept stable for the pre-check output).
IN_GRAPH_COSINE = "in_graph"
# Legacy cosine sets: N×N matrices (cosine_<N>_l<L>.json) and the per-pair cosines of the
# cosine-vs-leakage file. Their centrings differ, so they stay separate sets.
LEGACY_MATRIX_COSINE = "cosine_matrix"
LEGACY_FILE_COSINE = "cosine_leakage_file"

PER_QUESTION_COLUMNS = ["persona_a", "persona_b", "question_index", "js"]
PER_QUESTION_KL_COLUMNS = ["persona_a", "persona_b", "question_index", "kl_ab", "kl_ba"]
LEAKAGE_COLUMNS = ["source", "target", "rate"]


@dataclass
class CosineSet:
    """Cosine matrices of one centring, one N×N matrix (persona order of the inputs) per layer.

    Entries the source does not cover are NaN (the cosine-vs-leakage file only has cosines
    between its source personas and the rest).
    """

    label: str
    centring: str
    matrices: dict[str, np.ndarray]
    origin: str

    @property
    def layers(self) -> list[str]:
        return list(self.matrices)


@dataclass
class AnalysisInputs:
    origin: str  # "run" or "legacy"
    persona_names: list[str]
    js: dict[str, np.ndarray]  # averaging -> N×N
    primary_averaging: str
    kl: np.ndarray  # [i, j] = KL(P_i || P_j)
    kl_averaging: str
    cosine_sets: dict[str, CosineSet]
    leakage: pd.DataFrame  # source, target, rate (may be empty)
    leakage_note: str
    per_question_js: dict[str, pd.DataFrame]  # averaging -> persona_a, persona_b, question_index, js
    per_response: pd.DataFrame | None  # generator, question_index, persona_a, persona_b, js, n_tokens
    length_note: str
    precheck_detail: pd.DataFrame | None = None  # layer, source, target, cosine, rate, category
    precheck_centring: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # The run's noise-floor record (persona_assets.measure.noise_floor); measured False when unknown.
    noise_floor: dict[str, Any] = field(default_factory=lambda: not_measured(UNKNOWN_FLOOR_NOTE))
    # averaging -> persona_a, persona_b, question_index, kl_ab, kl_ba (for the question bootstrap of KL);
    # empty when per-question KL was not kept (the earlier study's files).
    per_question_kl: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def averagings(self) -> list[str]:
        return list(self.js)

    @property
    def expected_layers(self) -> list[str]:
        """Every layer any cosine source covers, in numeric order."""
        layers = {layer for cs in self.cosine_sets.values() for layer in cs.layers}
        if self.precheck_detail is not None:
            layers |= {f"layer{int(v)}" for v in self.precheck_detail["layer"].unique()}
        return sorted(layers, key=layer_number)

    def to_dict(self) -> dict[str, Any]:
        def frame(df: pd.DataFrame | None) -> list[dict] | None:
            return None if df is None else df.to_dict(orient="records")

        return {
            "origin": self.origin,
            "persona_names": self.persona_names,
            "js": {k: v.tolist() for k, v in self.js.items()},
            "primary_averaging": self.primary_averaging,
            "kl": self.kl.tolist(),
            "kl_averaging": self.kl_averaging,
            # JSON writers may sort keys: the order (first set = primary, layers by depth) travels as lists.
            "cosine_sets": {
                label: {
                    "centring": cs.centring,
                    "origin": cs.origin,
                    "layer_order": cs.layers,
                    "matrices": {k: m.tolist() for k, m in cs.matrices.items()},
                }
                for label, cs in self.cosine_sets.items()
            },
            "cosine_set_order": list(self.cosine_sets),
            "averaging_order": list(self.js),
            "leakage": frame(self.leakage),
            "leakage_note": self.leakage_note,
            "per_question_js": {k: frame(v) for k, v in self.per_question_js.items()},
            "per_response": frame(self.per_response),
            "length_note": self.length_note,
            "precheck_detail": frame(self.precheck_detail),
            "precheck_centring": self.precheck_centring,
            "provenance": self.provenance,
            "notes": self.notes,
            "noise_floor": self.noise_floor,
            "per_question_kl": {k: frame(v) for k, v in self.per_question_kl.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnalysisInputs:
        def matrix(rows: list) -> np.ndarray:
            return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)

        def frame(records: list | None, columns: list[str] | None = None) -> pd.DataFrame | None:
            if records is None:
                return None
            if columns is None:
                return pd.DataFrame(records)
            return pd.DataFrame(records, columns=columns) if not records else pd.DataFrame(records)[columns]

        return cls(
            origin=data["origin"],
            persona_names=list(data["persona_names"]),
            js={k: matrix(data["js"][k]) for k in data.get("averaging_order", list(data["js"]))},
            primary_averaging=data["primary_averaging"],
            kl=matrix(data["kl"]),
            kl_averaging=data["kl_averaging"],
            cosine_sets={
                label: CosineSet(
                    label,
                    (cs := data["cosine_sets"][label])["centring"],
                    {k: matrix(cs["matrices"][k]) for k in cs.get("layer_order", list(cs["matrices"]))},
                    cs["origin"],
                )
                for label in data.get("cosine_set_order", list(data["cosine_sets"]))
            },
            leakage=frame(data["leakage"], LEAKAGE_COLUMNS),
            leakage_note=data["leakage_note"],
            per_question_js={k: frame(v, PER_QUESTION_COLUMNS) for k, v in data["per_question_js"].items()},
            per_response=frame(data["per_response"]),
            length_note=data["length_note"],
            precheck_detail=frame(data["precheck_detail"]),
            precheck_centring=data.get("precheck_centring", ""),
            provenance=data.get("provenance", {}),
            notes=list(data.get("notes", [])),
            noise_floor=data.get("noise_floor") or not_measured(UNKNOWN_FLOOR_NOTE),
            per_question_kl={
                k: frame(v, PER_QUESTION_KL_COLUMNS) for k, v in (data.get("per_question_kl") or {}).items()
            },
        )


def layer_number(label: str) -> int:
    match = re.search(r"(\d+)$", label)
    return int(match.group(1)) if match else -1


# --- this project's own run ---------------------------------------------------------------------


def inputs_from_run(
    divergence_matrices: dict[str, Any],
    persona_cosine: dict[str, Any],
    leakage_rates: dict[str, Any],
    per_response: pd.DataFrame | None = None,
    per_pair_question: pd.DataFrame | None = None,
) -> AnalysisInputs:
    """Normalise the in-graph asset values: the divergence_per_response and divergence_per_pair_question tables."""
    from persona_assets.measure.aggregate import pair_matrices, pair_question_table

    names = list(divergence_matrices["persona_names"])
    if list(persona_cosine["persona_names"]) != names:
        raise InputError("persona_cosine and divergence_matrices cover different personas: re-materialize both")
    averaging = divergence_matrices["method"]["averaging"]
    js = {averaging: np.asarray(divergence_matrices["js_matrix"], dtype=float)}
    notes: list[str] = []
    if per_response is not None and averaging == ALL_RESPONSES:
        # Every response was scored under every pair, so the method's own averaging is recoverable.
        js[PAIR_OWN] = pair_matrices(per_response, names, PAIR_OWN).js
        notes.append("pair_own JS recomputed from the per-response table of this all_responses run")
    table = (
        per_pair_question
        if per_pair_question is not None
        else pd.DataFrame(divergence_matrices.get("per_pair_question") or [])
    )
    per_question = {}
    per_question_kl = {}
    if not table.empty:
        per_question[averaging] = table.rename(columns={"js_sym": "js"})[PER_QUESTION_COLUMNS]
        per_question_kl[averaging] = table[PER_QUESTION_KL_COLUMNS]
    if PAIR_OWN in js and averaging != PAIR_OWN and per_response is not None:
        own = pair_question_table(per_response, names, PAIR_OWN)
        per_question[PAIR_OWN] = own.rename(columns={"js_sym": "js"})[PER_QUESTION_COLUMNS]
        per_question_kl[PAIR_OWN] = own[PER_QUESTION_KL_COLUMNS]
    cosine = CosineSet(
        IN_GRAPH_COSINE,
        persona_cosine["centring"],
        {layer: np.asarray(m, dtype=float) for layer, m in persona_cosine["cosine_matrices"].items()},
        "persona_cosine asset",
    )
    if leakage_rates.get("available"):
        leakage = pd.DataFrame(leakage_rates["rows"], columns=LEAKAGE_COLUMNS)
        leakage_note = f"leakage rates from {leakage_rates.get('path', 'the leakage_rates asset')}"
        dropped = leakage_rates.get("dropped") or {}
        if dropped.get("n_dropped_pairs"):
            leakage_note += (
                f"; {dropped['n_dropped_pairs']} pair(s) of the file dropped, personas not in this run: "
                f"{', '.join(dropped['unknown_personas'])}"
            )
    else:
        leakage = pd.DataFrame(columns=LEAKAGE_COLUMNS)
        leakage_note = leakage_rates.get("note", "no leakage rates")
    if per_response is not None and "n_tokens" in per_response:
        length_note = "response lengths (n_tokens) from the per-response divergence table"
        per_response = per_response[["generator", "question_index", "persona_a", "persona_b", "js", "n_tokens"]]
    else:
        per_response = None
        length_note = "the per-response divergence table was not found: response lengths are not available"
    return AnalysisInputs(
        origin=RUN,
        persona_names=names,
        js=js,
        primary_averaging=averaging,
        kl=np.asarray(divergence_matrices["kl_matrix"], dtype=float),
        kl_averaging=averaging,
        cosine_sets={IN_GRAPH_COSINE: cosine},
        leakage=leakage,
        leakage_note=leakage_note,
        per_question_js=per_question,
        per_response=per_response,
        length_note=length_note,
        provenance={"model": divergence_matrices.get("model"), "layers": persona_cosine.get("layers")},
        notes=notes,
        noise_floor=divergence_matrices.get("noise_floor")
        or not_measured(
            "divergence_matrices predates the noise-floor measurement: re-materialize it to measure the floor"
        ),
        per_question_kl=per_question_kl,
    )
