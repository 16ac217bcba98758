"""`AnalysisInputs` from a folder laid out like the earlier study's results (data/reference_study).

divergence_matrices.json (required), cosine_leakage_correlation.json, cosine_<N>_l<L>.json matrices and
marker_eval/ (optional), each read by its validating reader in `persona_assets.inputs.formats`.
No dagster import.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from persona_assets.analysis.matrices import (
    ALL_RESPONSES,
    LEAKAGE_COLUMNS,
    LEGACY,
    LEGACY_FILE_COSINE,
    LEGACY_MATRIX_COSINE,
    PAIR_OWN,
    PER_QUESTION_COLUMNS,
    AnalysisInputs,
    CosineSet,
    layer_number,
)
from persona_assets.measure.noise_floor import UNKNOWN_FLOOR_NOTE, not_measured
from persona_assets.runs.errors import InputError

COSINE_MATRIX_FILE = re.compile(r"^cosine_.*_l(\d+)\.json$")
# Cosines in the cosine-vs-leakage file are rounded to 4 decimals; both directions of one pair
# must agree to that.
ROUNDED_COSINE_TOL = 1.5e-4


def _per_question_from_per_prompt(per_prompt: pd.DataFrame, averaging: str) -> pd.DataFrame:
    frame = per_prompt
    if averaging == PAIR_OWN:
        frame = frame[
            (frame["response_persona"] == frame["persona_a"]) | (frame["response_persona"] == frame["persona_b"])
        ]
    return (
        frame.groupby(["persona_a", "persona_b", "question_index"], sort=False)["js"]
        .mean()
        .reset_index()[PER_QUESTION_COLUMNS]
    )


def _cosines_from_leakage_file(detail: pd.DataFrame, names: list[str], path: Path) -> dict[str, np.ndarray]:
    """N×N per layer from the per-pair cosines of the cosine-vs-leakage file (NaN where absent)."""
    index = {n: k for k, n in enumerate(names)}
    core = detail[detail["source"].isin(index) & detail["target"].isin(index)]
    matrices: dict[str, np.ndarray] = {}
    for layer, sub in core.groupby("layer"):
        m = np.full((len(names), len(names)), np.nan)
        np.fill_diagonal(m, 1.0)
        for s, t, c in zip(sub["source"], sub["target"], sub["cosine"]):
            i, j = index[s], index[t]
            if not np.isnan(m[i, j]) and abs(m[i, j] - c) > ROUNDED_COSINE_TOL:
                raise InputError(f"{path}: layer{layer}: cosine({s}, {t}) = {c} but cosine({t}, {s}) = {m[i, j]}")
            # Both directions present: average the two roundings.
            m[i, j] = m[j, i] = c if np.isnan(m[i, j]) else (m[i, j] + c) / 2
        matrices[f"layer{int(layer)}"] = m
    return matrices


def inputs_from_legacy_dir(folder: Path) -> AnalysisInputs:
    """Import a folder of earlier results (the layout of data/reference_study).

    Required: ``divergence_matrices.json``. Optional: ``cosine_leakage_correlation.json``,
    ``cosine_<anything>_l<L>.json`` matrices, ``marker_eval/`` (raw leakage; without it the
    leakage column of the cosine-vs-leakage file is used). Every file goes through its validating
    importer; a bad file raises `InputError` naming it.
    """
    from persona_assets.inputs.formats import (
        all_responses_js_from_per_prompt,
        load_cosine_leakage_file,
        load_cosine_matrix_file,
        load_divergence_matrices_file,
        pair_own_js_from_per_prompt,
    )
    from persona_assets.inputs.leakage import load_marker_eval_dir, restrict_to_personas

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder of earlier results")
    divergence_path = folder / "divergence_matrices.json"
    if not divergence_path.is_file():
        raise InputError(f"{folder}: lacks divergence_matrices.json (the earlier run's JS/KL matrices)")
    divergences = load_divergence_matrices_file(divergence_path)
    names = divergences.persona_names
    per_prompt = divergences.per_prompt_js
    recomputed_all = all_responses_js_from_per_prompt(per_prompt, names)
    gap = float(np.abs(recomputed_all - divergences.js).max())
    if gap > 1e-9:
        raise InputError(
            f"{divergence_path}: js_matrix is not the all-responses mean of per_prompt_js (max gap {gap:.3g}); "
            "cannot tell which averaging it used"
        )
    js = {PAIR_OWN: pair_own_js_from_per_prompt(per_prompt, names), ALL_RESPONSES: divergences.js}
    notes = [
        "js_matrix of the file averages each pair over all responses (all_responses, verified against per_prompt_js); "
        "pair_own is recomputed from per_prompt_js (only A's and B's own responses)",
        "KL per prompt was not saved: KL and KL asymmetry are available with all_responses averaging only",
    ]
    provenance: dict[str, Any] = {
        "folder": str(folder.resolve()),
        "divergence_matrices": str(divergence_path),
        "divergence_metadata": divergences.metadata,
    }

    cosine_sets: dict[str, CosineSet] = {}
    matrix_files = sorted(p for p in folder.glob("cosine_*_l*.json") if COSINE_MATRIX_FILE.match(p.name))
    by_centring: dict[str, dict[str, np.ndarray]] = {}
    for path in matrix_files:
        loaded = load_cosine_matrix_file(path)
        if set(loaded.persona_names) != set(names):
            raise InputError(
                f"{path}: its personas differ from divergence_matrices.json "
                f"({sorted(set(loaded.persona_names) ^ set(names))}); cannot pair cosines with JS"
            )
        order = [loaded.persona_names.index(n) for n in names]
        layers = by_centring.setdefault(loaded.centring, {})
        label = f"layer{loaded.layer}"
        if label in layers:
            raise InputError(f"{path}: a second cosine matrix for layer {loaded.layer} with the same centring")
        layers[label] = loaded.matrix[np.ix_(order, order)]
    for k, (centring, layers) in enumerate(by_centring.items()):
        label = LEGACY_MATRIX_COSINE if k == 0 else f"{LEGACY_MATRIX_COSINE}_{k + 1}"
        cosine_sets[label] = CosineSet(
            label, centring, dict(sorted(layers.items(), key=lambda kv: layer_number(kv[0]))), "cosine_*_l*.json"
        )
    provenance["cosine_matrix_files"] = [str(p) for p in matrix_files]

    precheck_detail = None
    precheck_centring = ""
    file_leakage = None
    leakage_file = folder / "cosine_leakage_correlation.json"
    if leakage_file.is_file():
        loaded_file = load_cosine_leakage_file(leakage_file)
        precheck_detail = loaded_file.detail.rename(columns={"leakage": "rate"})
        precheck_centring = loaded_file.centring
        cosine_sets[LEGACY_FILE_COSINE] = CosineSet(
            LEGACY_FILE_COSINE,
            loaded_file.centring,
            _cosines_from_leakage_file(loaded_file.detail, names, leakage_file),
            str(leakage_file),
        )
        file_leakage = loaded_file.detail.drop_duplicates(["source", "target"]).rename(columns={"leakage": "rate"})[
            LEAKAGE_COLUMNS
        ]
        provenance["cosine_leakage_file"] = str(leakage_file)
    else:
        notes.append("no cosine_leakage_correlation.json: the per-layer pre-check over all its personas is skipped")

    marker_dir = folder / "marker_eval"
    if marker_dir.is_dir():
        leakage = load_marker_eval_dir(marker_dir)[LEAKAGE_COLUMNS]
        leakage_origin: Path | None = marker_dir
        leakage_note = f"directed leakage = marker_eval/<source>.json[target].rate ({marker_dir})"
        if file_leakage is not None:
            merged = file_leakage.merge(leakage, on=["source", "target"], suffixes=("_file", "_marker"))
            if len(merged) and float((merged["rate_file"] - merged["rate_marker"]).abs().max()) > 1e-9:
                notes.append(
                    "leakage in cosine_leakage_correlation.json differs from marker_eval/: marker_eval/ is used"
                )
    elif file_leakage is not None:
        leakage = file_leakage.reset_index(drop=True)
        leakage_note = f"no marker_eval/ folder: directed leakage taken from {leakage_file}"
        leakage_origin = leakage_file
    else:
        leakage = pd.DataFrame(columns=LEAKAGE_COLUMNS)
        leakage_note = "no marker_eval/ folder and no cosine_leakage_correlation.json: no leakage rates"
        leakage_origin = None
    if leakage_origin is not None:
        # Raises, naming both persona sets, when the rates share no pair with the matrices.
        overlap = restrict_to_personas(leakage, names, leakage_origin, personas_of="divergence_matrices.json")
        if overlap.dropped_pairs:
            notes.append(
                f"{len(overlap.dropped_pairs)} directed pair(s) of {leakage_origin.name} involve personas outside "
                "divergence_matrices.json and enter no JS analysis"
            )

    return AnalysisInputs(
        origin=LEGACY,
        persona_names=names,
        js=js,
        primary_averaging=PAIR_OWN,
        kl=divergences.kl,
        kl_averaging=ALL_RESPONSES,
        cosine_sets=cosine_sets,
        leakage=leakage.reset_index(drop=True),
        leakage_note=leakage_note,
        per_question_js={avg: _per_question_from_per_prompt(per_prompt, avg) for avg in (PAIR_OWN, ALL_RESPONSES)},
        per_response=None,
        length_note=(
            "response lengths are not available: divergence_matrices.json keeps neither the responses nor their "
            "token counts, so the length confound cannot be checked on these results"
        ),
        precheck_detail=precheck_detail,
        precheck_centring=precheck_centring,
        provenance=provenance,
        notes=notes,
        noise_floor=not_measured(UNKNOWN_FLOOR_NOTE),
    )
