"""Reader of an earlier run's ``divergence_matrices.json``, and the pair averages recomputed from its per-prompt JS."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from persona_assets.runs.errors import InputError, quoted
from persona_assets.inputs.formats.validation import (
    ALL_RESPONSES,
    LN2,
    PAIR_SEPARATOR,
    SYMMETRY_TOL,
    ZERO_TOL,
    check_diagonal,
    check_known,
    check_range,
    check_symmetric,
    is_number,
    read_persona_names,
    square_matrix,
    top_level_object,
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
    if not (is_number(value) and float(value).is_integer() and value > 0):
        raise InputError(f"{path}: {key} must be a positive integer, got {quoted(value)}")
    return int(value)


def load_divergence_matrices_file(path: Path, *, known_personas: Sequence[str] | None = None) -> LegacyDivergences:
    """Load and validate ``divergence_matrices.json``.

    Response k of ``per_prompt_js`` is decoded as k = response_persona_index * n_questions +
    question_index, with n_questions = n_prompts / n_response_personas (metadata, else the number
    of names); the response personas are ``persona_names`` in order.
    """
    path = Path(path)
    data = top_level_object(path)
    required = [
        "js_matrix",
        "kl_matrix",
        "kl_sym_matrix",
        "kl_asym_matrix",
        "persona_names",
        "per_prompt_js",
        "n_prompts",
    ]
    missing = [k for k in required if k not in data]
    if missing:
        raise InputError(f"{path}: lacks {', '.join(missing)}")
    names = read_persona_names(data["persona_names"], path)
    check_known(names, known_personas, path)
    n = len(names)
    metadata = data.get("metadata", {})
    if not isinstance(metadata, dict):
        raise InputError(f"{path}: metadata must be an object")

    mats = {
        k: square_matrix(data[k], path, k, n) for k in ("js_matrix", "kl_matrix", "kl_sym_matrix", "kl_asym_matrix")
    }
    js, kl = mats["js_matrix"], mats["kl_matrix"]
    check_symmetric(js, path, "js_matrix")
    check_diagonal(js, path, "js_matrix", 0.0, ZERO_TOL)
    check_range(js, path, "js_matrix", -ZERO_TOL, LN2 + ZERO_TOL, "[0, ln 2]")
    check_diagonal(kl, path, "kl_matrix", 0.0, ZERO_TOL)
    check_range(kl, path, "kl_matrix", -ZERO_TOL, np.inf, "[0, inf)")
    for key, expected, how in (
        ("kl_sym_matrix", (kl + kl.T) / 2, "(KL + KLᵀ)/2"),
        ("kl_asym_matrix", np.abs(kl - kl.T), "|KL − KLᵀ|"),
    ):
        gap = np.abs(mats[key] - expected)
        if gap.max() > SYMMETRY_TOL * max(1.0, float(np.abs(expected).max())):
            i, j = np.unravel_index(int(gap.argmax()), gap.shape)
            raise InputError(
                f"{path}: {key}[{i}][{j}]={mats[key][i, j]} but {how} from kl_matrix gives {expected[i, j]}"
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
        raise InputError(f"{path}: metadata.n_personas={metadata['n_personas']} but persona_names has {n}")
    if n_prompts % n_responders:
        raise InputError(f"{path}: n_prompts={n_prompts} is not a multiple of the {n_responders} response personas")
    n_questions = n_prompts // n_responders
    if "n_questions" in metadata and metadata["n_questions"] != n_questions:
        raise InputError(
            f"{path}: metadata.n_questions={metadata['n_questions']} but n_prompts / personas = {n_questions}"
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


def _per_prompt_frame(raw: Any, path: Path, names: list[str], n_prompts: int, n_questions: int) -> pd.DataFrame:
    if not isinstance(raw, dict):
        raise InputError(f"{path}: per_prompt_js must be an object {{response index: {{pair: js}}}}")
    expected_keys = {str(k) for k in range(n_prompts)}
    bad_keys = [k for k in raw if k not in expected_keys]
    if bad_keys:
        raise InputError(
            f"{path}: per_prompt_js has bad key(s) {', '.join(map(repr, bad_keys[:3]))}; "
            f"expected response indices 0..{n_prompts - 1}"
        )
    absent = sorted(expected_keys - set(raw), key=int)
    if absent:
        raise InputError(f"{path}: per_prompt_js lacks response(s) {', '.join(absent[:5])} of {n_prompts}")
    index = {name: i for i, name in enumerate(names)}
    pair_keys = {f"{a}{PAIR_SEPARATOR}{b}": (a, b) for i, a in enumerate(names) for b in names[i + 1 :]}
    records: list[tuple[int, str, int, str, str, float]] = []
    for k in range(n_prompts):
        entry = raw[str(k)]
        where = f"per_prompt_js[{k!r}]"
        if not isinstance(entry, dict):
            raise InputError(f"{path}: {where} must be an object {{'A__B': js}}")
        for key, value in entry.items():
            if key not in pair_keys:
                raise InputError(f"{path}: {where}: {_explain_pair_key(key, index)}")
            if not is_number(value) or not math.isfinite(value):
                raise InputError(f"{path}: {where}[{key!r}] must be a finite number, got {quoted(value)}")
            if not -ZERO_TOL <= value <= LN2 + ZERO_TOL:
                raise InputError(f"{path}: {where}[{key!r}]={value} outside [0, ln 2]")
        if len(entry) != len(pair_keys):
            lacking = [p for p in pair_keys if p not in entry]
            raise InputError(f"{path}: {where} lacks {len(lacking)} pair(s), e.g. {lacking[0]!r}")
        responder = names[k // n_questions]
        question = k % n_questions
        for key, value in entry.items():
            a, b = pair_keys[key]
            records.append((k, responder, question, a, b, float(value)))
    frame = pd.DataFrame(
        records,
        columns=["response_index", "response_persona", "question_index", "persona_a", "persona_b", "js"],
    )
    return frame


def _explain_pair_key(key: str, index: dict[str, int]) -> str:
    parts = key.split(PAIR_SEPARATOR)
    if len(parts) != 2:
        return f"bad pair key {quoted(key)}; expected 'A{PAIR_SEPARATOR}B'"
    unknown = [p for p in parts if p not in index]
    if unknown:
        return f"unknown persona(s) {', '.join(map(repr, unknown))} in pair key {quoted(key)}"
    a, b = parts
    if a == b:
        return f"pair key {quoted(key)} pairs a persona with itself"
    return f"pair key {quoted(key)} is not in persona order (expected '{b}{PAIR_SEPARATOR}{a}')"


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
        raise InputError(f"per_prompt_js: no values for pair {persona_names[i]} / {persona_names[j]}")
    return out


def all_responses_js_from_per_prompt(per_prompt_js: pd.DataFrame, persona_names: Sequence[str]) -> np.ndarray:
    """N x N JS where each pair averages over every response (the earlier run's averaging)."""
    lo, hi, js, _ = _pair_indices(per_prompt_js, persona_names)
    means = pd.Series(js).groupby([lo, hi]).mean()
    return _fill_symmetric(means, len(persona_names), persona_names)


def pair_own_js_from_per_prompt(per_prompt_js: pd.DataFrame, persona_names: Sequence[str]) -> np.ndarray:
    """N x N JS where pair (A, B) uses only responses written by A or by B.

    The mean over A's responses and the mean over B's responses are averaged with equal weight,
    so the two directions count the same even if they have different numbers of questions.
    """
    lo, hi, js, frame = _pair_indices(per_prompt_js, persona_names)
    index = {name: i for i, name in enumerate(persona_names)}
    responder = frame["response_persona"].map(index).to_numpy()
    own = (responder == lo) | (responder == hi)
    by_direction = pd.Series(js[own]).groupby([lo[own], hi[own], responder[own] == lo[own]]).mean()
    counts = by_direction.groupby(level=[0, 1]).size()
    one_sided = counts[counts < 2]
    if not one_sided.empty:
        i, j = one_sided.index[0]
        raise InputError(
            f"per_prompt_js: pair {persona_names[i]} / {persona_names[j]} lacks responses from one of its two personas"
        )
    means = by_direction.groupby(level=[0, 1]).mean()
    return _fill_symmetric(means, len(persona_names), persona_names)
