"""The cosine precheck: how the hidden-state cosines relate to leakage, set by set, before any divergence.

`cosine_precheck` (the asset's analysis) and `precheck_from_detail` (the earlier study's detail file).
Split from `correlation_report`, which holds the leakage analyses and re-exports these.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from persona_assets.analysis import inference
from persona_assets.analysis.matrices import AnalysisInputs
from persona_assets.analysis.pair_tables import cosine_column, directed_pair_table
from persona_assets.inputs.leakage import names_for_message
from persona_assets.stats import pair_correlations as corr
from persona_assets.stats.correlate import correlate
from persona_assets.stats.permutation_tests import DEFAULT_N_PERMUTATIONS

MIN_PAIRS = 3


def cosine_set_summary(inputs: AnalysisInputs, pairs: pd.DataFrame) -> dict[str, Any]:
    expected = inputs.expected_layers
    return {
        label: {
            "centring": cs.centring,
            "origin": cs.origin,
            "layers_present": cs.layers,
            "layers_missing": [layer for layer in expected if layer not in cs.matrices],
            "n_unordered_pairs_covered": {
                layer: int(pairs[cosine_column(label, layer)].notna().sum()) for layer in cs.layers
            },
        }
        for label, cs in inputs.cosine_sets.items()
    }


# --- pre-check ---------------------------------------------------------------------------------


def cosine_precheck(
    inputs: AnalysisInputs, *, n_boot: int, seed: int, n_perm: int = DEFAULT_N_PERMUTATIONS
) -> dict[str, Any]:
    """Cosine vs leakage per layer, per cosine set, and whether it rises towards the output."""
    directed = directed_pair_table(inputs)
    leakage = inference.leakage_matrix(inputs)
    out: dict[str, Any] = {
        "origin": inputs.origin,
        "expected_layers": inputs.expected_layers,
        "cosine_sets": list(inputs.cosine_sets),
        "unit": "directed (source, target) pairs; bootstrap clustered by source",
    }
    for label, cs in inputs.cosine_sets.items():
        entry: dict[str, Any] = {
            "centring": cs.centring,
            "layers": cs.layers,
            "layers_missing": [layer for layer in inputs.expected_layers if layer not in cs.matrices],
        }
        if len(directed) < MIN_PAIRS:
            entry["note"] = f"only {len(directed)} directed pairs have leakage rates ({inputs.leakage_note})"
        else:
            by_layer = {
                layer: inference.with_leakage_tests(
                    correlate(
                        directed[cosine_column(label, layer)],
                        directed["rate"],
                        clusters=directed["source"],
                        n_boot=n_boot,
                        seed=seed,
                    ).to_dict(),
                    cs.matrices[layer],
                    leakage,
                    directed,
                    cosine_column(label, layer),
                    n_perm=n_perm,
                    n_boot=n_boot,
                    seed=seed,
                )
                for layer in cs.layers
            }
            entry |= {"by_layer": by_layer, **corr.rise_summary(by_layer)}
        out[label] = entry
    if inputs.precheck_detail is not None:
        out["from_file"] = precheck_from_detail(
            inputs.precheck_detail,
            inputs.persona_names,
            inputs.precheck_centring,
            n_boot=n_boot,
            seed=seed,
            n_perm=n_perm,
        )
    return out


def precheck_from_detail(
    detail: pd.DataFrame,
    core_personas: list[str],
    centring: str,
    *,
    n_boot: int,
    seed: int,
    n_perm: int = DEFAULT_N_PERMUTATIONS,
) -> dict[str, Any]:
    """The pre-check on a cosine-vs-leakage file: all its pairs, and only pairs among the core personas."""
    wide = detail.pivot_table(index=["source", "target"], columns="layer", values="cosine").reset_index()
    rates = detail.drop_duplicates(["source", "target"])[["source", "target", "rate"]]
    wide = wide.merge(rates, on=["source", "target"])
    layers = sorted(int(c) for c in wide.columns if isinstance(c, (int, np.integer)))
    wide.columns = [f"layer{c}" if isinstance(c, (int, np.integer)) else c for c in wide.columns]
    core = wide[wide["source"].isin(core_personas) & wide["target"].isin(core_personas)]
    result: dict[str, Any] = {"centring": centring, "layers": [f"layer{v}" for v in layers]}
    for name, frame in (("all_pairs", wide), ("core_pairs", core)):
        if len(frame) < MIN_PAIRS:
            result[name] = {"n_pairs": int(len(frame)), "note": "fewer than 3 pairs"}
            continue
        by_layer = {
            f"layer{v}": inference.with_directed_table_tests(
                correlate(
                    frame[f"layer{v}"], frame["rate"], clusters=frame["source"], n_boot=n_boot, seed=seed
                ).to_dict(),
                frame,
                f"layer{v}",
                n_perm=n_perm,
                n_boot=n_boot,
                seed=seed,
            )
            for v in layers
        }
        result[name] = {
            "n_pairs": int(len(frame)),
            "n_sources": int(frame["source"].nunique()),
            "by_layer": by_layer,
            **corr.rise_summary(by_layer),
        }
    result["core_pairs"]["definition"] = "pairs whose source and target are both personas of the divergence matrices"
    if core.empty:
        # The all-pairs pre-check stands on its own, but a file sharing no pair with the matrices is
        # most likely the wrong file: say so with both persona sets.
        in_file = sorted(set(wide["source"]) | set(wide["target"]))
        result["core_pairs"]["note"] = (
            f"no pair of the file among the personas of the divergence matrices; personas in the file: "
            f"{names_for_message(in_file)}; personas of the matrices: {names_for_message(list(core_personas))}"
        )
    return result


# --- correlations ------------------------------------------------------------------------------
