"""Where results live on disk, and the IO manager that keeps asset outputs readable JSON.

Everything goes under one data directory (`PERSONA_DATA_DIR`, default ``data`` in the working
directory):
  outputs/<asset>.json        the value of each asset (what downstream assets load)
  outputs/*.csv               tables for pandas (per-response divergences, generations, …)
  cache/generations/<key>.json content-addressed greedy responses
Figures go to `PERSONA_FIGURES_DIR` (default ``figures``).

Files are written atomically (temporary file + rename), so a crash never leaves a torn file and
a failed run never replaces a good result with half of a new one.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any




def data_dir() -> Path:
    return Path(os.environ.get("PERSONA_DATA_DIR", "data")).resolve()


def figures_dir() -> Path:
    return Path(os.environ.get("PERSONA_FIGURES_DIR", "figures")).resolve()


def outputs_dir() -> Path:
    return data_dir() / "outputs"


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN/Infinity: write them as null so every JSON reader can open the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared and read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, value: Any) -> None:
    plain = json.loads(json.dumps(value, default=_json_default))
    atomic_write_text(path, json.dumps(_finite_or_none(plain), indent=1, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_csv(path: Path, frame: Any) -> None:
    atomic_write_text(path, frame.to_csv(index=False))
