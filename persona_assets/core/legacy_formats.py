"""Importers for result files of the earlier persona-similarity study (Qwen2.5-7B-Instruct).

Three JSON formats, each loaded into a typed dataclass after strict validation (shape, persona
names, ranges, symmetry, finiteness); any problem raises `InputError` naming the file and what is
wrong, because a silently mis-read matrix would corrupt every downstream correlation.

- ``cosine_leakage_correlation.json`` -> `CosineLeakageFile`: per-layer cosine-vs-leakage
  summaries and the per-pair detail (cosine, leakage, category).
- ``cosine_11_l20.json``-like files -> `CosineMatrix`: an N x N cosine matrix at one layer.
- ``divergence_matrices.json`` -> `LegacyDivergences`: teacher-forced JS / KL matrices and the
  per-response JS values, from which both pair averagings can be recomputed.

Cosines depend on which persona mean they were centred by, and the two cosine formats differ in
this, so each dataclass records its centring in words.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from persona_assets.core.errors import InputError
from persona_assets.core.leakage import read_json_file

LAYER_KEY = re.compile(r"^layer(\d+)$")
COSINE_MATRIX_KEY = re.compile(r"^cosine_matrix_l(\d+)$")
PAIR_SEPARATOR = "__"

# Tolerances: the earlier study computed in float32 and wrote float64 reprs, so diagonals of
# cosine matrices are 1 only to ~2e-7; symmetric quantities were symmetrised exactly.
COSINE_DIAGONAL_TOL = 1e-5
SYMMETRY_TOL = 1e-6
RANGE_TOL = 1e-6
ZERO_TOL = 1e-8
LN2 = math.log(2.0)  # JS divergence in nats never exceeds ln 2

ALL_RESPONSES = "all-responses"
PAIR_OWN = "pair-own"


# --- shared validation helpers ---------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _persona_names(value: Any, path: Path, key: str = "persona_names") -> list[str]:
    if not isinstance(value, list) or not value:
        raise InputError(f"{path}: {key} must be a non-empty list of persona names")
    for i, name in enumerate(value):
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"{path}: {key}[{i}] must be a non-empty string, got {name!r}")
    dups = sorted({name for name in value if value.count(name) > 1})
    if dups:
        raise InputError(f"{path}: {key} repeats persona(s) {', '.join(dups)}")
    return list(value)


def _check_known(names: Sequence[str], known: Sequence[str] | None, path: Path) -> None:
    if known is None:
        return
    unknown = [n for n in names if n not in set(known)]
    if unknown:
        raise InputError(f"{path}: unknown persona(s) {', '.join(unknown)}")


def _square_matrix(value: Any, path: Path, key: str, n: int) -> np.ndarray:
    """A finite float N x N array from nested lists, or InputError saying what is off."""
    if not isinstance(value, list) or not all(isinstance(row, list) for row in value):
        raise InputError(f"{path}: {key} must be a list of rows (lists of numbers)")
    lengths = {len(row) for row in value}
    if len(value) != n or lengths != {n}:
        raise InputError(
            f"{path}: {key} must be {n} x {n} (one row and column per persona), "
            f"got {len(value)} rows of length(s) {sorted(lengths)}"
        )
    for i, row in enumerate(value):
        for j, v in enumerate(row):
            if not _is_number(v):
                raise InputError(f"{path}: {key}[{i}][{j}] is not a number: {v!r}")
    arr = np.asarray(value, dtype=float)
    bad = np.argwhere(~np.isfinite(arr))
    if bad.size:
        i, j = bad[0]
        raise InputError(f"{path}: {key}[{i}][{j}] is not finite ({arr[i, j]})")
    return arr


def _check_symmetric(arr: np.ndarray, path: Path, key: str, tol: float = SYMMETRY_TOL) -> None:
    gap = np.abs(arr - arr.T)
    if gap.max() > tol:
        i, j = np.unravel_index(int(gap.argmax()), gap.shape)
        raise InputError(
            f"{path}: {key} is not symmetric: [{i}][{j}]={arr[i, j]} but [{j}][{i}]={arr[j, i]}"
        )


def _check_diagonal(arr: np.ndarray, path: Path, key: str, value: float, tol: float) -> None:
    gap = np.abs(np.diag(arr) - value)
    if gap.max() > tol:
        i = int(gap.argmax())
        raise InputError(f"{path}: {key} diagonal must be {value}, but [{i}][{i}]={arr[i, i]}")


def _check_range(
    arr: np.ndarray, path: Path, key: str, lo: float, hi: float, shown: str
) -> None:
    """Values must lie in [lo, hi] (bounds already widened by a tolerance); ``shown`` is the
    nominal range for the message, e.g. "[0, ln 2]"."""
    bad = np.argwhere((arr < lo) | (arr > hi))
    if bad.size:
        i, j = bad[0]
        raise InputError(f"{path}: {key}[{i}][{j}]={arr[i, j]} outside {shown}")


def _top_level_object(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    data = read_json_file(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object at the top level")
    return data


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
            if not (_is_number(value) and float(value).is_integer() and value >= 0):
                raise InputError(f"{path}: {where}.n_pairs must be a count, got {value!r}")
            continue
        if value is None:  # an undefined correlation may legitimately be null
            continue
        if not _is_number(value) or not math.isfinite(value):
            raise InputError(f"{path}: {where}.{key} must be a finite number, got {value!r}")
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
            if not _is_number(value) or not math.isfinite(value):
                raise InputError(
                    f"{path}: {where}[{i}] ({target}): {name} must be a finite number, "
                    f"got {value!r}"
                )
            if not lo - RANGE_TOL <= value <= hi + RANGE_TOL:
                raise InputError(
                    f"{path}: {where}[{i}] ({target}): {name}={value} outside [{lo:g}, {hi:g}]"
                )
        category = item.get("category")
        if category is not None and not isinstance(category, str):
            raise InputError(f"{path}: {where}[{i}] ({target}): category must be a string")
        rows.append({"layer": layer, "source": source, "target": target,
                     "cosine": float(cos), "leakage": float(leak), "category": category})
    return rows


def load_cosine_leakage_file(
    path: Path, *, require_layers: Sequence[int] | None = None
) -> CosineLeakageFile:
    """Load and validate ``cosine_leakage_correlation.json``.

    Checks: keys ``layer<N>``; every layer names the same sources and, per source, the same
    targets; each source's summary exists and its ``n_pairs`` matches its detail rows (and the
    aggregate's the total); leakage and category of a pair agree across layers (they do not
    depend on the layer); ranges and finiteness. ``require_layers`` makes absent layers an error.
    """
    path = Path(path)
    data = _top_level_object(path)
    if not data:
        raise InputError(f"{path}: no layers")
    by_layer: dict[int, dict[str, Any]] = {}
    for key, value in data.items():
        match = LAYER_KEY.match(key)
        if not match:
            raise InputError(f"{path}: bad key {key!r}; expected 'layer<N>' such as 'layer20'")
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

    detail = pd.DataFrame(
        rows, columns=["layer", "source", "target", "cosine", "leakage", "category"]
    )
    # Leakage is measured once per directed pair; a layer-dependent value means a corrupt file.
    spread = detail.groupby(["source", "target"]).agg(
        leak_min=("leakage", "min"), leak_max=("leakage", "max"),
        n_cat=("category", lambda s: s.fillna("").nunique()),
    )
    bad = spread[(spread["leak_max"] - spread["leak_min"] > 1e-12) | (spread["n_cat"] > 1)]
    if not bad.empty:
        source, target = bad.index[0]
        raise InputError(
            f"{path}: pair {source} -> {target} has different leakage or category across layers"
        )
    n_personas = len(set(detail["source"]) | set(detail["target"]))
    return CosineLeakageFile(
        path=path,
        layers=layers,
        per_layer=per_layer,
        detail=detail,
        centring=f"mean over all personas in the file (N={n_personas})",
        n_personas=n_personas,
    )


# --- cosine matrix ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CosineMatrix:
    """An N x N matrix of centred cosine similarities between persona centroids at one layer."""

    path: Path
    layer: int
    matrix: np.ndarray
    persona_names: list[str]
    centring: str


def load_cosine_matrix_file(
    path: Path, *, known_personas: Sequence[str] | None = None
) -> CosineMatrix:
    """Load ``{cosine_matrix_l<L>: N x N, persona_names: [N]}`` and validate it.

    Checks: exactly one ``cosine_matrix_l<L>`` key and no unexpected keys; square and matching the
    names; finite; diagonal ~ 1; symmetric within 1e-6; values within [-1, 1] (+-1e-6); names
    unique and, when ``known_personas`` is given, all known.
    """
    path = Path(path)
    data = _top_level_object(path)
    matrix_keys = [k for k in data if COSINE_MATRIX_KEY.match(k)]
    other = [k for k in data if k != "persona_names" and k not in matrix_keys]
    if other:
        raise InputError(
            f"{path}: bad key(s) {', '.join(map(repr, other))}; expected 'cosine_matrix_l<L>' "
            "and 'persona_names'"
        )
    if len(matrix_keys) != 1:
        raise InputError(
            f"{path}: expected exactly one 'cosine_matrix_l<L>' key, found {len(matrix_keys)}"
        )
    if "persona_names" not in data:
        raise InputError(f"{path}: lacks persona_names")
    key = matrix_keys[0]
    layer = int(COSINE_MATRIX_KEY.match(key).group(1))  # type: ignore[union-attr]
    names = _persona_names(data["persona_names"], path)
    _check_known(names, known_personas, path)
    matrix = _square_matrix(data[key], path, key, len(names))
    _check_diagonal(matrix, path, key, 1.0, COSINE_DIAGONAL_TOL)
    _check_symmetric(matrix, path, key)
    _check_range(matrix, path, key, -1.0 - RANGE_TOL, 1.0 + RANGE_TOL, "[-1, 1]")
    return CosineMatrix(
        path=path,
        layer=layer,
        matrix=matrix,
        persona_names=names,
        centring=f"mean over the {len(names)} personas of the matrix",
    )


# --- divergence matrices ----------------------------------------------------------------------


@dataclass(frozen=True)
class LegacyDivergences:
    """Teacher-forced divergences of the earlier run (nats).

    ``js[i, j]`` (symmetric, zero diagonal) and ``kl[i, j]`` = mean KL(P_i || P_j), with
    ``kl_sym`` = (KL + KLᵀ)/2 and ``kl_asym`` = |KL − KLᵀ|. ``averaging`` says which responses a
    pair's value averages over: that run used every persona's responses ("all-responses"), not
    only the pair's own. ``per_prompt_js`` has one row per (response, unordered pair) with columns
    response_index, response_persona, question_index, persona_a, persona_b, js.
    """

    path: Path
    js: np.ndarray
    kl: np.ndarray
    kl_sym: np.ndarray
    kl_asym: np.ndarray
    persona_names: list[str]
    per_prompt_js: pd.DataFrame
    metadata: dict[str, Any]
    n_questions: int
    averaging: str = ALL_RESPONSES
    units: str = field(default="nats")


def _int_field(value: Any, path: Path, key: str) -> int:
    if not (_is_number(value) and float(value).is_integer() and value > 0):
        raise InputError(f"{path}: {key} must be a positive integer, got {value!r}")
    return int(value)


def load_divergence_matrices_file(
    path: Path, *, known_personas: Sequence[str] | None = None
) -> LegacyDivergences:
    """Load and validate ``divergence_matrices.json``.

    Response k of ``per_prompt_js`` is decoded as k = response_persona_index * n_questions +
    question_index, with n_questions = n_prompts / n_response_personas (metadata, else the number
    of names); the response personas are ``persona_names`` in order.
    """
    path = Path(path)
    data = _top_level_object(path)
    required = ["js_matrix", "kl_matrix", "kl_sym_matrix", "kl_asym_matrix", "persona_names",
                "per_prompt_js", "n_prompts"]
    missing = [k for k in required if k not in data]
    if missing:
        raise InputError(f"{path}: lacks {', '.join(missing)}")
    names = _persona_names(data["persona_names"], path)
    _check_known(names, known_personas, path)
    n = len(names)
    metadata = data.get("metadata", {})
    if not isinstance(metadata, dict):
        raise InputError(f"{path}: metadata must be an object")

    mats = {k: _square_matrix(data[k], path, k, n)
            for k in ("js_matrix", "kl_matrix", "kl_sym_matrix", "kl_asym_matrix")}
    js, kl = mats["js_matrix"], mats["kl_matrix"]
    _check_symmetric(js, path, "js_matrix")
    _check_diagonal(js, path, "js_matrix", 0.0, ZERO_TOL)
    _check_range(js, path, "js_matrix", -ZERO_TOL, LN2 + ZERO_TOL, "[0, ln 2]")
    _check_diagonal(kl, path, "kl_matrix", 0.0, ZERO_TOL)
    _check_range(kl, path, "kl_matrix", -ZERO_TOL, np.inf, "[0, inf)")
    for key, expected, how in (
        ("kl_sym_matrix", (kl + kl.T) / 2, "(KL + KLᵀ)/2"),
        ("kl_asym_matrix", np.abs(kl - kl.T), "|KL − KLᵀ|"),
    ):
        gap = np.abs(mats[key] - expected)
        if gap.max() > SYMMETRY_TOL * max(1.0, float(np.abs(expected).max())):
            i, j = np.unravel_index(int(gap.argmax()), gap.shape)
            raise InputError(
                f"{path}: {key}[{i}][{j}]={mats[key][i, j]} but {how} from kl_matrix "
                f"gives {expected[i, j]}"
            )

    n_prompts = _int_field(data["n_prompts"], path, "n_prompts")
    n_responders = metadata.get("n_response_personas", metadata.get("n_personas", n))
    n_responders = _int_field(n_responders, path, "metadata.n_response_personas")
    if n_responders != n:
        raise InputError(
            f"{path}: metadata says {n_responders} response personas but persona_names has {n}; "
            "response indices cannot be mapped to personas"
        )
    if "n_personas" in metadata and metadata["n_personas"] != n:
        raise InputError(
            f"{path}: metadata.n_personas={metadata['n_personas']} but persona_names has {n}"
        )
    if n_prompts % n_responders:
        raise InputError(
            f"{path}: n_prompts={n_prompts} is not a multiple of the {n_responders} "
            "response personas"
        )
    n_questions = n_prompts // n_responders
    if "n_questions" in metadata and metadata["n_questions"] != n_questions:
        raise InputError(
            f"{path}: metadata.n_questions={metadata['n_questions']} but n_prompts / personas "
            f"= {n_questions}"
        )

    per_prompt = _per_prompt_frame(data["per_prompt_js"], path, names, n_prompts, n_questions)
    return LegacyDivergences(
        path=path,
        js=js,
        kl=kl,
        kl_sym=mats["kl_sym_matrix"],
        kl_asym=mats["kl_asym_matrix"],
        persona_names=names,
        per_prompt_js=per_prompt,
        metadata=dict(metadata),
        n_questions=n_questions,
    )


def _per_prompt_frame(
    raw: Any, path: Path, names: list[str], n_prompts: int, n_questions: int
) -> pd.DataFrame:
    if not isinstance(raw, dict):
        raise InputError(
            f"{path}: per_prompt_js must be an object {{response index: {{pair: js}}}}"
        )
    expected_keys = {str(k) for k in range(n_prompts)}
    bad_keys = [k for k in raw if k not in expected_keys]
    if bad_keys:
        raise InputError(
            f"{path}: per_prompt_js has bad key(s) {', '.join(map(repr, bad_keys[:3]))}; "
            f"expected response indices 0..{n_prompts - 1}"
        )
    absent = sorted(expected_keys - set(raw), key=int)
    if absent:
        raise InputError(
            f"{path}: per_prompt_js lacks response(s) {', '.join(absent[:5])} of {n_prompts}"
        )
    index = {name: i for i, name in enumerate(names)}
    pair_keys = {
        f"{a}{PAIR_SEPARATOR}{b}": (a, b)
        for i, a in enumerate(names) for b in names[i + 1:]
    }
    records: list[tuple[int, str, int, str, str, float]] = []
    for k in range(n_prompts):
        entry = raw[str(k)]
        where = f"per_prompt_js[{k!r}]"
        if not isinstance(entry, dict):
            raise InputError(f"{path}: {where} must be an object {{'A__B': js}}")
        for key, value in entry.items():
            if key not in pair_keys:
                raise InputError(f"{path}: {where}: {_explain_pair_key(key, index)}")
            if not _is_number(value) or not math.isfinite(value):
                raise InputError(f"{path}: {where}[{key!r}] must be a finite number, got {value!r}")
            if not -ZERO_TOL <= value <= LN2 + ZERO_TOL:
                raise InputError(f"{path}: {where}[{key!r}]={value} outside [0, ln 2]")
        if len(entry) != len(pair_keys):
            lacking = [p for p in pair_keys if p not in entry]
            raise InputError(
                f"{path}: {where} lacks {len(lacking)} pair(s), e.g. {lacking[0]!r}"
            )
        responder = names[k // n_questions]
        question = k % n_questions
        for key, value in entry.items():
            a, b = pair_keys[key]
            records.append((k, responder, question, a, b, float(value)))
    frame = pd.DataFrame(
        records,
        columns=["response_index", "response_persona", "question_index", "persona_a",
                 "persona_b", "js"],
    )
    return frame


def _explain_pair_key(key: str, index: dict[str, int]) -> str:
    parts = key.split(PAIR_SEPARATOR)
    if len(parts) != 2:
        return f"bad pair key {key!r}; expected 'A{PAIR_SEPARATOR}B'"
    unknown = [p for p in parts if p not in index]
    if unknown:
        return f"unknown persona(s) {', '.join(map(repr, unknown))} in pair key {key!r}"
    a, b = parts
    if a == b:
        return f"pair key {key!r} pairs a persona with itself"
    return f"pair key {key!r} is not in persona order (expected '{b}{PAIR_SEPARATOR}{a}')"


# --- recomputing pair averages from per-prompt JS ---------------------------------------------


def _pair_indices(
    per_prompt_js: pd.DataFrame, persona_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
    needed = {"response_persona", "persona_a", "persona_b", "js"}
    missing = needed - set(per_prompt_js.columns)
    if missing:
        raise InputError(f"per_prompt_js: missing column(s) {', '.join(sorted(missing))}")
    index = {name: i for i, name in enumerate(persona_names)}
    for col in ("persona_a", "persona_b", "response_persona"):
        unknown = sorted(set(per_prompt_js[col]) - set(index))
        if unknown:
            raise InputError(f"per_prompt_js: unknown persona(s) in {col}: {', '.join(unknown)}")
    js = per_prompt_js["js"].to_numpy(dtype=float)
    if not np.isfinite(js).all():
        raise InputError("per_prompt_js: js contains NaN or infinite values")
    a = per_prompt_js["persona_a"].map(index).to_numpy()
    b = per_prompt_js["persona_b"].map(index).to_numpy()
    if (a == b).any():
        raise InputError("per_prompt_js: a persona is paired with itself")
    # Unordered pairs: put the lower index first so A__B and B__A rows pool together.
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    return lo, hi, js, per_prompt_js


def _fill_symmetric(values: pd.Series, n: int, persona_names: Sequence[str]) -> np.ndarray:
    out = np.full((n, n), np.nan)
    for (i, j), v in values.items():
        out[i, j] = out[j, i] = v
    np.fill_diagonal(out, 0.0)
    if np.isnan(out).any():
        i, j = np.argwhere(np.isnan(out))[0]
        raise InputError(
            f"per_prompt_js: no values for pair {persona_names[i]} / {persona_names[j]}"
        )
    return out


def all_responses_js_from_per_prompt(
    per_prompt_js: pd.DataFrame, persona_names: Sequence[str]
) -> np.ndarray:
    """N x N JS where each pair averages over every response (the earlier run's averaging)."""
    lo, hi, js, _ = _pair_indices(per_prompt_js, persona_names)
    means = pd.Series(js).groupby([lo, hi]).mean()
    return _fill_symmetric(means, len(persona_names), persona_names)


def pair_own_js_from_per_prompt(
    per_prompt_js: pd.DataFrame, persona_names: Sequence[str]
) -> np.ndarray:
    """N x N JS where pair (A, B) uses only responses written by A or by B.

    The mean over A's responses and the mean over B's responses are averaged with equal weight,
    so the two directions count the same even if they have different numbers of questions.
    """
    lo, hi, js, frame = _pair_indices(per_prompt_js, persona_names)
    index = {name: i for i, name in enumerate(persona_names)}
    responder = frame["response_persona"].map(index).to_numpy()
    own = (responder == lo) | (responder == hi)
    by_direction = (
        pd.Series(js[own])
        .groupby([lo[own], hi[own], responder[own] == lo[own]])
        .mean()
    )
    counts = by_direction.groupby(level=[0, 1]).size()
    one_sided = counts[counts < 2]
    if not one_sided.empty:
        i, j = one_sided.index[0]
        raise InputError(
            f"per_prompt_js: pair {persona_names[i]} / {persona_names[j]} lacks responses "
            "from one of its two personas"
        )
    means = by_direction.groupby(level=[0, 1]).mean()
    return _fill_symmetric(means, len(persona_names), persona_names)
