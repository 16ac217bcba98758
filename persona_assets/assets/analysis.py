"""The analysis half of the graph: CPU only, no model."""

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from persona_assets.config import AnalysisConfig, KillGateConfig, PrecheckConfig
from persona_assets.core import correlations
from persona_assets.core.kill_gates import discrimination_verdict, redundancy_verdict
from persona_assets.storage import outputs_dir, write_csv


def _cosines(persona_cosine: dict) -> dict[str, np.ndarray]:
    return {layer: np.asarray(m, dtype=float) for layer, m in persona_cosine["cosine_matrices"].items()}


def _leakage_frame(leakage_rates: dict) -> pd.DataFrame:
    return pd.DataFrame(leakage_rates["rows"], columns=["source", "target", "rate"])


@dg.asset(group_name="analysis", kinds={"pandas", "scipy"}, code_version="1")
def cosine_precheck(
    context: dg.AssetExecutionContext, config: PrecheckConfig, persona_cosine: dict, leakage_rates: dict
) -> dict:
    """Does hidden-state cosine predict leakage better towards the output layers? (context, not a gate)

    Spearman and Pearson of cosine vs leakage per layer — from the in-graph cosine when leakage
    rates are supplied, and from an existing cosine-vs-leakage file when one is configured — and
    whether the correlation rises from the earliest to the latest layer.
    """
    layers = list(persona_cosine["cosine_matrices"])
    names = persona_cosine["persona_names"]
    result: dict = {"in_graph": {"centring": persona_cosine["centring"], "layers": persona_cosine["layers"]}}
    if leakage_rates["available"]:
        n = len(names)
        placeholder = np.zeros((n, n))  # JS/KL are not needed for the cosine pre-check
        directed = correlations.directed_leakage_pairs(
            names, placeholder, placeholder, _cosines(persona_cosine), _leakage_frame(leakage_rates)
        )
        if len(directed) >= 3:
            result["in_graph"] |= correlations.cosine_leakage_by_layer(
                directed, layers, n_boot=config.n_bootstrap, seed=config.seed
            )
        else:
            result["in_graph"]["note"] = f"only {len(directed)} directed pairs of this run have leakage rates"
    else:
        result["in_graph"]["note"] = leakage_rates["note"]

    if config.cosine_leakage_file:
        from persona_assets.core.legacy_formats import load_cosine_leakage_file

        legacy = load_cosine_leakage_file(Path(config.cosine_leakage_file))
        detail = legacy.detail.rename(columns={"leakage": "rate"})
        wide = detail.pivot_table(index=["source", "target"], columns="layer", values="cosine").reset_index()
        rates = detail.drop_duplicates(["source", "target"])[["source", "target", "rate"]]
        wide = wide.merge(rates, on=["source", "target"])
        wide.columns = [f"cosine_layer{c}" if isinstance(c, (int, np.integer)) else c for c in wide.columns]
        file_layers = [f"layer{layer}" for layer in legacy.layers]
        result["from_file"] = {
            "path": config.cosine_leakage_file,
            "centring": legacy.centring,
            "layers": legacy.layers,
            **correlations.cosine_leakage_by_layer(wide, file_layers, n_boot=config.n_bootstrap, seed=config.seed),
        }
    else:
        result["from_file"] = {"note": "no cosine_leakage_file configured"}
    for section in ("in_graph", "from_file"):
        if "rises" in result[section]:
            context.add_output_metadata({f"{section}_rises": str(result[section]["rises"])})
    return result


@dg.asset(group_name="analysis", kinds={"pandas", "scipy"}, code_version="1")
def leakage_correlations(
    context: dg.AssetExecutionContext,
    config: AnalysisConfig,
    divergence_matrices: dict,
    persona_cosine: dict,
    leakage_rates: dict,
) -> dict:
    """Is output-level similarity redundant with cosine, and does it predict leakage better?

    JS and KL_sym vs cosine per layer over all unordered pairs; JS vs leakage over the directed
    (source, target) pairs that have leakage data, cosine vs leakage on exactly those pairs, and
    KL asymmetry vs directional leakage. Tables: outputs/pairs.csv, outputs/directed_leakage_pairs.csv.
    """
    names = divergence_matrices["persona_names"]
    if persona_cosine["persona_names"] != names:
        raise dg.Failure("persona_cosine and divergence_matrices cover different personas: re-materialize both")
    js = np.asarray(divergence_matrices["js_matrix"], dtype=float)
    kl = np.asarray(divergence_matrices["kl_matrix"], dtype=float)
    cosines = _cosines(persona_cosine)
    layers = list(cosines)
    pairs = correlations.unordered_pairs(names, js, kl, cosines)
    write_csv(outputs_dir() / "pairs.csv", pairs)
    result = {
        "averaging": divergence_matrices["method"]["averaging"],
        "cosine_centring": persona_cosine["centring"],
        "layers": layers,
        "n_pairs": len(pairs),
        **correlations.js_cosine_correlations(pairs, layers, n_boot=config.n_bootstrap, seed=config.seed),
    }
    if not leakage_rates["available"]:
        result["leakage"] = {"available": False, "note": leakage_rates["note"]}
    else:
        directed = correlations.directed_leakage_pairs(names, js, kl, cosines, _leakage_frame(leakage_rates))
        write_csv(outputs_dir() / "directed_leakage_pairs.csv", directed)
        if len(directed) < 3:
            result["leakage"] = {
                "available": False,
                "note": f"only {len(directed)} directed pairs of this run have leakage rates (need ≥ 3)",
            }
        else:
            result["leakage"] = {"available": True, **correlations.leakage_correlations(directed, layers, n_boot=config.n_bootstrap, seed=config.seed)}
    context.add_output_metadata(
        {f"spearman_js_cosine_{layer}": result["js_vs_cosine"][layer]["spearman_rho"] for layer in layers}
        | {"leakage_available": result["leakage"]["available"]}
    )
    return result


@dg.asset(group_name="analysis", kinds={"pandas"}, code_version="1")
def kill_gate_verdicts(
    context: dg.AssetExecutionContext, config: KillGateConfig, divergence_matrices: dict, leakage_correlations: dict
) -> dict:
    """The pre-registered kill criteria, each with its evidence: discrimination and redundancy."""
    js = np.asarray(divergence_matrices["js_matrix"], dtype=float)
    upper = js[np.triu_indices(len(js), k=1)]
    discrimination = discrimination_verdict(upper, min_std=config.min_js_std, min_ratio=config.min_js_ratio)
    redundancy = redundancy_verdict(
        {layer: c["spearman_rho"] for layer, c in leakage_correlations["js_vs_cosine"].items()},
        max_abs_rho=config.max_abs_js_cosine_rho,
    )
    verdicts = {"discrimination": discrimination, "redundancy": redundancy}
    context.add_output_metadata({f"{name}_killed": v["killed"] for name, v in verdicts.items()})
    return {"averaging": divergence_matrices["method"]["averaging"], "model": divergence_matrices["model"], **verdicts}
