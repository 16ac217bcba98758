"""What the readers of the earlier study's files share: tolerances, names and validation helpers."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from persona_assets.runs.errors import InputError, quoted
from persona_assets.inputs.leakage import read_json_file

LAYER_KEY = re.compile(r"^layer(\d+)$")
COSINE_MATRIX_KEY = re.compile(r"^cosine_matrix_l(\d+)$")
PAIR_SEPARATOR = "__"

# Tolerances: the earlier study computed in float32 and wrote float64 reprs, so diagonals of
# cosine matrices are 1 only to ~2e-7; symmetric quantities were symmetrised exactly.
COSINE_DIAGONAL_TOL = 1e-5
SYMMETRY_TOL = 1e-6
RANGE_TOL = 1e-6
ZERO_TOL = 1e-8
# One spelling of these, shared with the measurement: ln 2 bounds JS in nats; the averaging modes.
from persona_assets.constants import ALL_RESPONSES, PAIR_OWN  # noqa: E402, F401  (re-exported)
from persona_assets.constants import LN2  # noqa: E402, F401  (re-exported)


# --- shared validation helpers ---------------------------------------------------------------


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_persona_names(value: Any, path: Path, key: str = "persona_names") -> list[str]:
    if not isinstance(value, list) or not value:
        raise InputError(f"{path}: {key} must be a non-empty list of persona names")
    for i, name in enumerate(value):
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"{path}: {key}[{i}] must be a non-empty string, got {quoted(name)}")
    dups = sorted({name for name in value if value.count(name) > 1})
    if dups:
        raise InputError(f"{path}: {key} repeats persona(s) {', '.join(dups)}")
    return list(value)


def check_known(names: Sequence[str], known: Sequence[str] | None, path: Path) -> None:
    if known is None:
        return
    unknown = [n for n in names if n not in set(known)]
    if unknown:
        raise InputError(f"{path}: unknown persona(s) {', '.join(unknown)}")


def square_matrix(value: Any, path: Path, key: str, n: int) -> np.ndarray:
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
            if not is_number(v):
                raise InputError(f"{path}: {key}[{i}][{j}] is not a number: {quoted(v)}")
    arr = np.asarray(value, dtype=float)
    bad = np.argwhere(~np.isfinite(arr))
    if bad.size:
        i, j = bad[0]
        raise InputError(f"{path}: {key}[{i}][{j}] is not finite ({arr[i, j]})")
    return arr


def check_symmetric(arr: np.ndarray, path: Path, key: str, tol: float = SYMMETRY_TOL) -> None:
    gap = np.abs(arr - arr.T)
    if gap.max() > tol:
        i, j = np.unravel_index(int(gap.argmax()), gap.shape)
        raise InputError(f"{path}: {key} is not symmetric: [{i}][{j}]={arr[i, j]} but [{j}][{i}]={arr[j, i]}")


def check_diagonal(arr: np.ndarray, path: Path, key: str, value: float, tol: float) -> None:
    gap = np.abs(np.diag(arr) - value)
    if gap.max() > tol:
        i = int(gap.argmax())
        raise InputError(f"{path}: {key} diagonal must be {value}, but [{i}][{i}]={arr[i, i]}")


def check_range(arr: np.ndarray, path: Path, key: str, lo: float, hi: float, shown: str) -> None:
    """Values must lie in [lo, hi] (bounds already widened by a tolerance); ``shown`` is the
    nominal range for the message, e.g. "[0, ln 2]"."""
    bad = np.argwhere((arr < lo) | (arr > hi))
    if bad.size:
        i, j = bad[0]
        raise InputError(f"{path}: {key}[{i}][{j}]={arr[i, j]} outside {shown}")


def top_level_object(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    data = read_json_file(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object at the top level")
    return data
