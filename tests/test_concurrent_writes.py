"""OS processes writing one data directory at once, each writing content of its own, while others
read it: every read sees one writer's whole file, a writer killed mid-write leaves the previous
file whole, and no read-modify-write (cache entry, alert line) loses or tears anything.

Each of these tests fails when the guarantee it names is removed from persona_assets.runs.storage or
persona_assets.runs.alerts; tests/mutations/run_mutations.py checks that it does.
"""

from __future__ import annotations

import json
import multiprocessing
import random
from pathlib import Path

from persona_assets.measure.divergence_store import DivergenceCache
from tests import concurrent_writers as workers

SPAWN = multiprocessing.get_context("spawn")  # fresh interpreters: no inherited threads or locks


def _run_together(*jobs: tuple) -> None:
    """Start every job, then wait for all; each job's args end with a barrier they all share,
    so the processes really run at the same time rather than one after another."""
    barrier = SPAWN.Barrier(len(jobs))
    processes = [SPAWN.Process(target=target, args=(*args, barrier)) for target, args in jobs]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=180)
        assert p.exitcode == 0, f"{p.name} exited with {p.exitcode}"


def test_readers_during_writes_of_different_content_see_only_whole_files(tmp_path: Path) -> None:
    shared, stop = tmp_path / "shared", tmp_path / "stop"
    versions, size = 12, 1_500_000
    barrier = SPAWN.Barrier(4)
    writers = [
        SPAWN.Process(target=workers.write_versions, args=(str(shared), w, versions, size, barrier)) for w in range(2)
    ]
    reports = [tmp_path / f"reader_{r}.json" for r in range(2)]
    readers = [SPAWN.Process(target=workers.poll, args=(str(shared), str(stop), str(rep), barrier)) for rep in reports]
    for p in writers + readers:
        p.start()
    try:
        for p in writers:
            p.join(timeout=180)
    finally:
        stop.touch()  # the readers stop whatever happened to the writers
        for p in readers:
            p.join(timeout=60)
    assert [p.exitcode for p in writers + readers] == [0, 0, 0, 0]

    for report in [json.loads(path.read_text()) for path in reports]:
        assert report["n_torn"] == 0, report["torn"]
        assert report["whole"] >= 5  # the reader did overlap the writes
    for k in range(workers.N_PATHS):
        writer, version = workers.check((shared / f"value_{k}.json").read_bytes())
        assert writer in (0, 1) and version == versions - 1  # the last version of whoever wrote last
    assert sorted(p.name for p in shared.iterdir()) == [
        f"value_{k}.json" for k in range(workers.N_PATHS)
    ]  # no temp files


def test_a_writer_killed_mid_write_leaves_the_previous_file_whole(tmp_path: Path) -> None:
    path, size = tmp_path / "value.json", 8_000_000
    expected = {workers.check(d) for d in workers.encoded_documents(7, size, 4)}
    rng = random.Random(0)
    for round_ in range(6):
        started = tmp_path / f"started_{round_}"
        writer = SPAWN.Process(target=workers.rewrite_forever, args=(str(path), 7, size, str(started)))
        writer.start()
        try:
            workers.wait_for(started, timeout_s=60)
            writer.join(timeout=rng.uniform(0.05, 0.3))  # let it rewrite the file a few times
        finally:
            writer.kill()  # SIGKILL: no handler, no clean-up
            writer.join(timeout=30)
        assert writer.exitcode == -9
        assert workers.check(path.read_bytes()) in expected, f"round {round_}"
    # What a kill may leave: the writer's temporary files beside it, never under the file's name.
    assert all(
        p.name == "value.json"
        or (p.name.startswith(".value.json.") and p.name.endswith(".tmp"))
        or p.name.startswith("started_")
        for p in tmp_path.iterdir()
    )


def test_concurrent_runs_adding_pairs_to_one_cache_entry_lose_none(tmp_path: Path) -> None:
    keys = [f"{k:02x}" + "0" * 62 for k in range(8)]
    pairs = {w: [f"{w}{i}" for i in range(40)] for w in "abc"}
    _run_together(*[(workers.add_pairs, (str(tmp_path), keys, mine)) for mine in pairs.values()])
    cache = DivergenceCache(tmp_path)
    for key in keys:
        entry = cache.get(key)
        assert entry is not None and sorted(entry["pairs"]) == sorted(sum(pairs.values(), []))


def test_concurrent_alert_appends_of_large_lines_keep_every_line_whole(tmp_path: Path) -> None:
    path, n, size = tmp_path / "alerts.jsonl", 60, 200_000  # each line is several append writes
    _run_together(*[(workers.append_alerts, (str(path), w, n, size)) for w in range(3)])
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    seen = []
    for number, line in enumerate(lines[:-1]):
        record = json.loads(line)  # a torn or interleaved line does not parse
        assert workers.alert(record["writer"], record["i"], size) == record, f"line {number} is not one whole alert"
        seen.append((record["writer"], record["i"]))
    assert sorted(seen) == [(w, i) for w in range(3) for i in range(n)]  # none lost, none doubled
