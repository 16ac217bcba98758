"""Reader of ``cosine_leakage_correlation.json`` (cosine vs marker leakage per layer, 111 personas)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from persona_assets.runs.errors import InputError, quoted
from persona_assets.inputs.formats.validation import (
    LAYER_KEY,
    RANGE_TOL,
    is_number,
    top_level_object,
)


# --- cosine vs leakage ------------------------------------------------------------------------


@dataclass(frozen=True)
class CosineLeakageFile:
    """``cosine_leakage_correlation.json``: per-layer cosine-vs-leakage results for 5 sources.

    ``per_layer[L]`` keeps the file's summaries for layer L: one entry per source
    (``spearman_rho, spearman_p, pearson_r, pearson_p, n_pairs``), ``_aggregate`` and, when
    present, ``_per_category``. ``detail`` has one row per (layer, source, target) with columns
    layer, source, target, cosine, leakage, category; cosines were rounded to 4 decimals.
    """

    path: Path
    layers: list[int]
    per_layer: dict[int, dict[str, Any]]
    detail: pd.DataFrame
    centring: str
    n_personas: int


def _check_summary(summary: Any, path: Path, where: str, fields: Sequence[str]) -> None:
    if not isinstance(summary, dict):
        raise InputError(f"{path}: {where} must be an object of summary statistics")
    missing = [f for f in fields if f not in summary]
    if missing:
        raise InputError(f"{path}: {where} lacks {', '.join(missing)}")
    for key in fields:
        value = summary[key]
        if key == "n_pairs":
            if not (is_number(value) and float(value).is_integer() and value >= 0):
                raise InputError(f"{path}: {where}.n_pairs must be a count, got {quoted(value)}")
            continue
        if value is None:  # an undefined correlation may legitimately be null
            continue
        if not is_number(value) or not math.isfinite(value):
            raise InputError(f"{path}: {where}.{key} must be a finite number, got {quoted(value)}")
        lo, hi = (0.0, 1.0) if key.endswith("_p") else (-1.0, 1.0)
        if not lo - RANGE_TOL <= value <= hi + RANGE_TOL:
            raise InputError(f"{path}: {where}.{key}={value} outside [{lo:g}, {hi:g}]")


def _detail_rows(items: Any, path: Path, layer: int, source: str) -> list[dict[str, Any]]:
    where = f"layer{layer}._per_source_detail.{source}"
    if not isinstance(items, list) or not items:
        raise InputError(f"{path}: {where} must be a non-empty list of pairs")
    rows, seen = [], set()
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InputError(f"{path}: {where}[{i}] must be an object")
        missing = [k for k in ("persona", "cosine_sim", "leakage_rate") if k not in item]
        if missing:
            raise InputError(f"{path}: {where}[{i}] lacks {', '.join(missing)}")
        target = item["persona"]
        if not isinstance(target, str) or not target.strip():
            raise InputError(f"{path}: {where}[{i}].persona must be a persona name")
        if target == source:
            raise InputError(f"{path}: {where}[{i}]: source paired with itself")
        if target in seen:
            raise InputError(f"{path}: {where}: persona {target!r} listed twice")
        seen.add(target)
        cos, leak = item["cosine_sim"], item["leakage_rate"]
        checks = (("cosine_sim", cos, -1.0, 1.0), ("leakage_rate", leak, 0.0, 1.0))
        for name, value, lo, hi in checks:
            if not is_number(value) or not math.isfinite(value):
                raise InputError(
                    f"{path}: {where}[{i}] ({target}): {name} must be a finite number, got {quoted(value)}"
                )
            if not lo - RANGE_TOL <= value <= hi + RANGE_TOL:
                raise InputError(f"{path}: {where}[{i}] ({target}): {name}={value} outside [{lo:g}, {hi:g}]")
        category = item.get("category")
        if category is not None and not isinstance(category, str):
            raise InputError(f"{path}: {where}[{i}] ({target}): category must be a string")
        rows.append(
            {
                "layer": layer,
                "source": source,
                "target": target,
                "cosine": float(cos),
                "leakage": float(leak),
                "category": category,
            }
        )
    return rows


def load_cosine_leakage_file(path: Path, *, require_layers: Sequence[int] | None = None) -> CosineLeakageFile:
    """Load and validate ``cosine_leakage_correlation.json``.

    Checks: keys ``layer<N>``; every layer names the same sources and, per source, the same
    targets; each source's summary exists and its ``n_pairs`` matches its detail rows (and the
    aggregate's the total); leakage and category of a pair agree across layers (they do not
    depend on the layer); ranges and finiteness. ``require_layers`` makes absent layers an error.
    """
    path = Path(path)
    data = top_level_object(path)
    if not data:
        raise InputError(f"{path}: no layers")
    by_layer: dict[int, dict[str, Any]] = {}
    for key, value in data.items():
        match = LAYER_KEY.match(key)
        if not match:
            raise InputError(f"{path}: bad key {quoted(key)}; expected 'layer<N>' such as 'layer20'")
        layer = int(match.group(1))
        if layer in by_layer:
            raise InputError(f"{path}: layer {layer} appears under two keys")
        if not isinstance(value, dict):
            raise InputError(f"{path}: {key} must be an object")
        by_layer[layer] = value
    layers = sorted(by_layer)
    if require_layers is not None:
        missing = sorted(set(require_layers) - set(layers))
        if missing:
            raise InputError(f"{path}: missing layer(s) {', '.join(map(str, missing))}")

    per_layer: dict[int, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    reference_pairs: set[tuple[str, str]] | None = None
    stat_fields = ("spearman_rho", "spearman_p", "pearson_r", "pearson_p", "n_pairs")
    for layer in layers:
        block = by_layer[layer]
        details = block.get("_per_source_detail")
        if not isinstance(details, dict) or not details:
            raise InputError(f"{path}: layer{layer} lacks _per_source_detail")
        summary_sources = {k for k in block if not k.startswith("_")}
        if summary_sources != set(details):
            raise InputError(
                f"{path}: layer{layer}: sources with summaries {sorted(summary_sources)} differ "
                f"from sources with detail {sorted(details)}"
            )
        layer_rows: list[dict[str, Any]] = []
        for source, items in details.items():
            source_rows = _detail_rows(items, path, layer, source)
            _check_summary(block[source], path, f"layer{layer}.{source}", stat_fields)
            if block[source]["n_pairs"] != len(source_rows):
                raise InputError(
                    f"{path}: layer{layer}.{source}.n_pairs={block[source]['n_pairs']} but "
                    f"{len(source_rows)} pairs are listed"
                )
            layer_rows += source_rows
        if "_aggregate" not in block:
            raise InputError(f"{path}: layer{layer} lacks _aggregate")
        _check_summary(block["_aggregate"], path, f"layer{layer}._aggregate", stat_fields)
        if block["_aggregate"]["n_pairs"] != len(layer_rows):
            raise InputError(
                f"{path}: layer{layer}._aggregate.n_pairs={block['_aggregate']['n_pairs']} but "
                f"{len(layer_rows)} pairs are listed"
            )
        categories = block.get("_per_category")
        if categories is not None:
            if not isinstance(categories, dict):
                raise InputError(f"{path}: layer{layer}._per_category must be an object")
            counts = pd.Series([r["category"] for r in layer_rows]).value_counts()
            for cat, summary in categories.items():
                where = f"layer{layer}._per_category.{cat}"
                _check_summary(summary, path, where, ("spearman_rho", "spearman_p", "n_pairs"))
                if summary["n_pairs"] != counts.get(cat, 0):
                    raise InputError(
                        f"{path}: {where}.n_pairs={summary['n_pairs']} but the detail has "
                        f"{counts.get(cat, 0)} pairs of that category"
                    )
        pairs = {(r["source"], r["target"]) for r in layer_rows}
        if reference_pairs is None:
            reference_pairs = pairs
        elif pairs != reference_pairs:
            only_here = sorted(pairs - reference_pairs)[:3]
            absent = sorted(reference_pairs - pairs)[:3]
            raise InputError(
                f"{path}: layer{layer} covers different pairs from layer{layers[0]} "
                f"(extra: {only_here}, missing: {absent})"
            )
        per_layer[layer] = {k: v for k, v in block.items() if k != "_per_source_detail"}
        rows += layer_rows

    detail = pd.DataFrame(rows, columns=["layer", "source", "target", "cosine", "leakage", "category"])
    # Leakage is measured once per directed pair; a layer-dependent value means a corrupt file.
    spread = detail.groupby(["source", "target"]).agg(
        leak_min=("leakage", "min"),
        leak_max=("leakage", "max"),
        n_cat=("category", lambda s: s.fillna("").nunique()),
    )
    bad = spread[(spread["leak_max"] - spread["leak_min"] > 1e-12) | (spread["n_cat"] > 1)]
    if not bad.empty:
        source, target = bad.index[0]
        raise InputError(f"{path}: pair {source} -> {target} has different leakage or category across layers")
    n_personas = len(set(detail["source"]) | set(detail["target"]))
    return CosineLeakageFile(
        path=path,
        layers=layers,
        per_layer=per_layer,
        detail=detail,
        centring=f"mean over all personas in the file (N={n_personas})",
        n_personas=n_personas,
    )
