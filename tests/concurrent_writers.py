"""Workers for tests/test_concurrent_writes.py, in a module of their own so that spawned processes
import only the storage code they exercise (no Dagster, no torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

N_PATHS = 8


def json_value(k: int) -> dict[str, Any]:
    """What every writer writes to path k: large enough that one write takes several syscalls."""
    return {"path": k, "rows": [{"i": i, "text": f"row {i} of file {k} " * 8} for i in range(400)]}


def write_json_many(directory: str, rounds: int) -> None:
    from persona_assets.storage import write_json

    for r in range(rounds):
        for k in range(N_PATHS):
            write_json(Path(directory) / f"value_{(k + r) % N_PATHS}.json", json_value((k + r) % N_PATHS))


def add_pairs(directory: str, keys: list[str], pair_keys: list[str]) -> None:
    """Add each pair to each entry with its own read-modify-write, as a scoring run does."""
    from persona_assets.core.divergence_store import DivergenceCache

    cache = DivergenceCache(Path(directory))
    for pk in pair_keys:
        for key in keys:
            entry = cache.get(key) or {"n_tokens": 3, "pairs": {}}
            entry["pairs"][pk] = {"js": 0.1, "kl_ab": 0.2, "kl_ba": 0.3}
            cache.put(key, entry)


def append_alerts(path: str, writer: int, n: int) -> None:
    from persona_assets.core.alerts import append_jsonl

    for i in range(n):
        append_jsonl(Path(path), {"writer": writer, "i": i, "message": "x" * 20000})
