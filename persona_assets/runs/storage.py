"""How result files are written: atomically, as stable JSON/CSV, with a lock for read-merge-write.

Which directories they go to is the `ResultsStore` resource's business (resources/results.py).

Files are written atomically (temporary file + rename), so a crash never leaves a torn file and
a failed run never replaces a good result with half of a new one. Nothing here deletes or empties
a directory: a run that fails leaves every earlier file in place.

Concurrent runs on one data directory
Two runs (or two processes of one run) may write the same data directory at once. Whole-file
writes need nothing more than the atomic rename: a reader or a later run sees one writer's
complete file, never a mix. What a rename cannot protect is a read-modify-write — read a file,
add to it, write it back — where the second writer would silently drop the first one's additions.
Those few sequences hold `exclusive_lock` (an advisory `fcntl.flock` on a lock file in the
directory they change) for just the read-merge-write:
  - a divergence cache entry gaining pairs (`DivergenceCache.put` merges with what is on disk);
  - an alert appended to the JSON-lines file.
A lock around short sequences was chosen over run-scoped staging with an atomic publish: the
caches are shared across runs on purpose (content-addressed, written as work completes so a
killed run resumes), so staging them per run would defeat them, and outputs are single files
already published by rename. Content-addressed generation entries are written once with the same
bytes by whoever gets there, so they need no lock. Runs with *different* configurations sharing
one data directory still replace each other's outputs/ (each file whole, the last writer's); give
them separate `PERSONA_DATA_DIR`s.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LOCK_FILE = ".lock"


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


def default_cache_dir() -> Path:
    """~/.cache/persona-divergence (XDG_CACHE_HOME respected): converted models (the resource's `model_cache_dir`
    overrides it there), the figures' Vega bundle and their drawings."""
    return Path(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))) / "persona-divergence"


def cache_entry_path(directory: Path, key: str) -> Path:
    """Where a content-addressed cache keeps the entry of `key`: <directory>/<key[:2]>/<key>.json."""
    return Path(directory) / key[:2] / f"{key}.json"


def read_pairs_entry(path: Path, **json_options: Any) -> dict[str, Any] | None:
    """A cache entry {"pairs": {...}, ...}; None when it is absent, unreadable, or not such a dict, so that a torn
    or corrupt entry is recomputed, never trusted. `json_options` go to `json.loads` (e.g. `parse_constant`)."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"), **json_options)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError, and what a parse_constant raises
        return None
    return record if isinstance(record, dict) and isinstance(record.get("pairs"), dict) else None


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
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


@contextmanager
def exclusive_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on `directory` (its ``.lock`` file) across processes.

    Advisory, so only code that takes it is serialised: use it around read-modify-write
    sequences, never around plain atomic writes. The kernel drops the lock when the holder exits,
    so a killed run cannot leave the directory locked.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK_FILE, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
