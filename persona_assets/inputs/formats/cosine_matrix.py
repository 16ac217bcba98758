"""Reader of ``cosine_<N>_l<L>.json`` files: an N x N cosine matrix at one layer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from persona_assets.runs.errors import InputError
from persona_assets.inputs.formats.validation import (
    COSINE_DIAGONAL_TOL,
    COSINE_MATRIX_KEY,
    RANGE_TOL,
    check_diagonal,
    check_known,
    check_range,
    check_symmetric,
    read_persona_names,
    square_matrix,
    top_level_object,
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


def load_cosine_matrix_file(path: Path, *, known_personas: Sequence[str] | None = None) -> CosineMatrix:
    """Load ``{cosine_matrix_l<L>: N x N, persona_names: [N]}`` and validate it.

    Checks: exactly one ``cosine_matrix_l<L>`` key and no unexpected keys; square and matching the
    names; finite; diagonal ~ 1; symmetric within 1e-6; values within [-1, 1] (+-1e-6); names
    unique and, when ``known_personas`` is given, all known.
    """
    path = Path(path)
    data = top_level_object(path)
    matrix_keys = [k for k in data if COSINE_MATRIX_KEY.match(k)]
    other = [k for k in data if k != "persona_names" and k not in matrix_keys]
    if other:
        raise InputError(
            f"{path}: bad key(s) {', '.join(map(repr, other))}; expected 'cosine_matrix_l<L>' and 'persona_names'"
        )
    if len(matrix_keys) != 1:
        raise InputError(f"{path}: expected exactly one 'cosine_matrix_l<L>' key, found {len(matrix_keys)}")
    if "persona_names" not in data:
        raise InputError(f"{path}: lacks persona_names")
    key = matrix_keys[0]
    layer = int(COSINE_MATRIX_KEY.match(key).group(1))  # type: ignore[union-attr]
    names = read_persona_names(data["persona_names"], path)
    check_known(names, known_personas, path)
    matrix = square_matrix(data[key], path, key, len(names))
    check_diagonal(matrix, path, key, 1.0, COSINE_DIAGONAL_TOL)
    check_symmetric(matrix, path, key)
    check_range(matrix, path, key, -1.0 - RANGE_TOL, 1.0 + RANGE_TOL, "[-1, 1]")
    return CosineMatrix(
        path=path,
        layer=layer,
        matrix=matrix,
        persona_names=names,
        centring=f"mean over the {len(names)} personas of the matrix",
    )
