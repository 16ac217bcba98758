"""Tokenizers loaded once per model directory and process; every caller gets its own copy.

Loading a tokenizer takes 0.3–0.4 s on two cores (transformers and the Rust tokenizers library both parse
tokenizer.json), and a process loads the same one several times: each run checks its prompts with the tokenizer
before the weights load with it again, and a process that runs the graph again (a test suite, a notebook) starts
from scratch each time. A deep copy of a loaded tokenizer takes about 0.14 s and shares no state with it, so a
caller that changes its copy (padding side, special tokens) changes nothing for the next one.

The key is the directory's files (name, size, modification time): a tokenizer file rewritten in place is loaded
afresh. A location that is not a directory (a hub id) is loaded every time. No dagster import.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

MAX_TOKENIZERS = 4  # a process uses one model, a test process a few; a large vocabulary's tokenizer is ~50 MB

_loaded: dict[tuple, Any] = {}
_lock = threading.Lock()


def directory_key(location: str) -> tuple | None:
    """(resolved directory, its files' names, sizes and modification times), or None for what is not a directory."""
    path = Path(location)
    if not path.is_dir():
        return None
    with os.scandir(path) as entries:
        stats = [(entry.name, entry.stat()) for entry in entries if entry.is_file()]
    return str(path.resolve()), tuple(sorted((name, stat.st_size, stat.st_mtime_ns) for name, stat in stats))


def tokenizer_copy(location: str, load: Callable[[str], Any]) -> Any:
    """A copy of the tokenizer that `load(location)` returns, loading it only the first time for these files."""
    key = directory_key(location)
    if key is None:
        return load(location)
    with _lock:
        loaded = _loaded.get(key)
    if loaded is None:
        loaded = load(location)
        with _lock:
            _loaded[key] = loaded
            while len(_loaded) > MAX_TOKENIZERS:
                del _loaded[next(iter(_loaded))]  # the oldest
    return copy.deepcopy(loaded)
