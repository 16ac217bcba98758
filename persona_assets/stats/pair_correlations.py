"""Correlations the study asks for: JS/KL vs cosine, JS and cosine vs leakage, KL asymmetry.

Inputs are plain matrices (index order = `persona_names`) and a leakage table of directed
(source, target, rate) rows. Every correlation is a `statistics.Correlation` dict (Spearman and
Pearson with p-values, n, bootstrap CI).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import pandas as pd

from persona_assets.stats.correlate import correlate


def unordered_pairs(
    persona_names: list[str], js: np.ndarray, kl: np.ndarray, cosine_by_layer: Mapping[str, np.ndarray]
) -> pd.DataFrame:
    """One row per unordered pair (i < j): js, kl_sym and one cosine column per layer."""
    i, j = np.triu_indices(len(persona_names), k=1)
    frame = pd.DataFrame(
        {
            "persona_a": np.asarray(persona_names)[i],
            "persona_b": np.asarray(persona_names)[j],
            "js": js[i, j],
            "kl_sym": (kl[i, j] + kl[j, i]) / 2,
        }
    )
    for layer, cosine in cosine_by_layer.items():
        frame[f"cosine_{layer}"] = cosine[i, j]
    return frame


def directed_leakage_pairs(
    persona_names: list[str],
    js: np.ndarray,
    kl: np.ndarray,
    cosine_by_layer: Mapping[str, np.ndarray],
    leakage: pd.DataFrame,
) -> pd.DataFrame:
    """Directed (source, target) pairs of the run that have a leakage rate, with JS, KLs and cosines.

    `rate_reverse` is leak(target→source) where the leakage data has it (needed for the signed
    KL-asymmetry test), else NaN.
    """
    index = {name: k for k, name in enumerate(persona_names)}
    known = leakage[
        leakage["source"].isin(index) & leakage["target"].isin(index) & (leakage["source"] != leakage["target"])
    ]
    rates = {(s, t): r for s, t, r in zip(known["source"], known["target"], known["rate"])}
    rows = []
    for (source, target), rate in rates.items():
        s, t = index[source], index[target]
        row = {
            "source": source,
            "target": target,
            "rate": rate,
            "rate_reverse": rates.get((target, source), np.nan),
            "js": js[s, t],
            "kl_source_target": kl[s, t],
            "kl_target_source": kl[t, s],
        }
        for layer, cosine in cosine_by_layer.items():
            row[f"cosine_{layer}"] = cosine[s, t]
        rows.append(row)
    return pd.DataFrame(rows)


def js_cosine_correlations(pairs: pd.DataFrame, layers: list[str], *, n_boot: int, seed: int) -> dict:
    return {
        "js_vs_cosine": {
            layer: correlate(pairs["js"], pairs[f"cosine_{layer}"], n_boot=n_boot, seed=seed).to_dict()
            for layer in layers
        },
        "kl_sym_vs_cosine": {
            layer: correlate(pairs["kl_sym"], pairs[f"cosine_{layer}"], n_boot=n_boot, seed=seed).to_dict()
            for layer in layers
        },
        "unit": "unordered persona pairs",
    }


def leakage_correlations(directed: pd.DataFrame, layers: list[str], *, n_boot: int, seed: int) -> dict:
    """JS vs leakage, cosine vs leakage on the same pairs, KL asymmetry vs directional leakage."""
    clusters = directed["source"]
    out = {
        "n_directed_pairs": int(len(directed)),
        "n_sources": int(directed["source"].nunique()),
        "unit": "directed (source, target) pairs; bootstrap clustered by source",
        "js_vs_leakage": correlate(
            directed["js"], directed["rate"], clusters=clusters, n_boot=n_boot, seed=seed
        ).to_dict(),
        "kl_source_target_vs_leakage": correlate(
            directed["kl_source_target"], directed["rate"], clusters=clusters, n_boot=n_boot, seed=seed
        ).to_dict(),
        "cosine_vs_leakage_same_pairs": {
            layer: correlate(
                directed[f"cosine_{layer}"], directed["rate"], clusters=clusters, n_boot=n_boot, seed=seed
            ).to_dict()
            for layer in layers
        },
    }
    both = directed.dropna(subset=["rate_reverse"])
    signed_kl = both["kl_source_target"] - both["kl_target_source"]
    signed_leak = both["rate"] - both["rate_reverse"]
    out["kl_asymmetry"] = {
        "signed": correlate(signed_kl, signed_leak, clusters=both["source"], n_boot=n_boot, seed=seed).to_dict(),
        "absolute": correlate(
            signed_kl.abs(), signed_leak.abs(), clusters=both["source"], n_boot=n_boot, seed=seed
        ).to_dict(),
        "definition": "signed: KL(s→t) − KL(t→s) vs leak(s→t) − leak(t→s), over pairs with leakage in both directions",
        "n_pairs_with_both_directions": int(len(both)),
    }
    return out


def cosine_leakage_by_layer(directed: pd.DataFrame, layers: list[str], *, n_boot: int, seed: int) -> dict:
    """Pre-check: cosine vs leakage at each layer and whether it rises from the first to the last."""
    by_layer = {
        layer: correlate(
            directed[f"cosine_{layer}"], directed["rate"], clusters=directed["source"], n_boot=n_boot, seed=seed
        ).to_dict()
        for layer in layers
    }
    return {"by_layer": by_layer, **rise_summary(by_layer)}


def layer_depth(label: str) -> int:
    """The layer number at the end of a label like ``layer20`` (-1 when there is none)."""
    match = re.search(r"(\d+)$", str(label))
    return int(match.group(1)) if match else -1


def rise_summary(by_layer: Mapping[str, dict]) -> dict:
    """Does Spearman ρ(cosine, leakage) rise from the shallowest to the deepest layer?

    First and last are taken in depth order (the number in the label), whatever order the layers
    were configured or stored in.
    """
    layers = sorted((layer for layer in by_layer if by_layer[layer].get("spearman_rho") is not None), key=layer_depth)
    if len(layers) < 2:
        return {"rises": None, "rise_note": "fewer than two layers with a defined correlation"}
    first, last = layers[0], layers[-1]
    rho_first, rho_last = by_layer[first]["spearman_rho"], by_layer[last]["spearman_rho"]
    return {
        "rises": bool(rho_last > rho_first),
        "first_layer": first,
        "last_layer": last,
        "spearman_first": rho_first,
        "spearman_last": rho_last,
    }
