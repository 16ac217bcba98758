"""Two OS processes writing one data directory at once leave every file whole and complete."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

from persona_assets.core.divergence_store import DivergenceCache
from persona_assets.storage import read_json, write_json
from tests import concurrent_writers as workers

SPAWN = multiprocessing.get_context("spawn")  # fresh interpreters: no inherited threads or locks


def _run_together(*jobs: tuple) -> None:
    processes = [SPAWN.Process(target=target, args=args) for target, args in jobs]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=120)
        assert p.exitcode == 0, f"writer exited with {p.exitcode}"


def test_concurrent_write_json_to_the_same_paths(tmp_path: Path) -> None:
    shared, single = tmp_path / "shared", tmp_path / "single"
    _run_together(*[(workers.write_json_many, (str(shared), 30)) for _ in range(2)])
    for k in range(workers.N_PATHS):
        write_json(single / f"value_{k}.json", workers.json_value(k))
    for k in range(workers.N_PATHS):
        name = f"value_{k}.json"
        assert read_json(shared / name) == workers.json_value(k)
        assert (shared / name).read_bytes() == (single / name).read_bytes()
    assert sorted(p.name for p in shared.iterdir()) == sorted(p.name for p in single.iterdir())  # no temp files left


def test_concurrent_runs_adding_pairs_to_one_cache_entry_lose_none(tmp_path: Path) -> None:
    keys = [f"{k:02x}" + "0" * 62 for k in range(6)]
    mine, theirs = [f"a{i}" for i in range(15)], [f"b{i}" for i in range(15)]
    _run_together((workers.add_pairs, (str(tmp_path), keys, mine)), (workers.add_pairs, (str(tmp_path), keys, theirs)))
    cache = DivergenceCache(tmp_path)
    for key in keys:
        entry = cache.get(key)
        assert entry is not None and sorted(entry["pairs"]) == sorted(mine + theirs)


def test_concurrent_alert_appends_keep_lines_whole(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    _run_together(*[(workers.append_alerts, (str(path), w, 60)) for w in range(2)])
    lines = path.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert sorted((r["writer"], r["i"]) for r in records) == [(w, i) for w in range(2) for i in range(60)]
