"""Workers for tests/test_concurrent_writes.py, in a module of their own so that spawned processes
import only the storage code they exercise (no Dagster, no torch).

Every writer writes content of its own (its id, a version number and a body of its own size and
text) with the SHA-256 of the body inside, so any reader can tell a whole file from a torn one or
from a mix of two writers' bytes.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

N_PATHS = 3


class TornFile(ValueError):
    """The bytes are not one writer's complete version."""


def document(writer: int, version: int, size: int) -> dict[str, Any]:
    """A self-checking document of about `size` characters, different for every (writer, version)."""
    unit = f"writer {writer} version {version}; "
    body = (unit * (size // len(unit) + 1))[: size + 97 * writer + version]
    return {"writer": writer, "version": version, "body": body, "sha256": hashlib.sha256(body.encode()).hexdigest()}


def check(data: bytes) -> tuple[int, int]:
    """(writer, version) of a whole document; TornFile for anything else (empty, cut, mixed)."""
    try:
        value = json.loads(data)
        body, digest = value["body"], value["sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise TornFile(f"{len(data)} bytes do not parse as one document: {exc}") from None
    if hashlib.sha256(body.encode()).hexdigest() != digest:
        raise TornFile(f"{len(data)} bytes: body does not match its checksum")
    return value["writer"], value["version"]


def write_versions(directory: str, writer: int, versions: int, size: int, barrier: Any) -> None:
    """Write `versions` documents of this writer to each of the N_PATHS files, in turn, through
    the storage module's `write_json` (what every asset output goes through)."""
    from persona_assets.runs.storage import write_json

    barrier.wait()
    for version in range(versions):
        for k in range(N_PATHS):
            write_json(Path(directory) / f"value_{(k + writer) % N_PATHS}.json", document(writer, version, size))


def poll(directory: str, stop_file: str, report: str, barrier: Any) -> None:
    """Read every file again and again until `stop_file` appears; record whole and torn reads."""
    names = [f"value_{k}.json" for k in range(N_PATHS)]
    whole, torn = 0, []
    barrier.wait()
    while not Path(stop_file).exists():
        for name in names:
            try:
                data = (Path(directory) / name).read_bytes()
            except FileNotFoundError:
                continue  # not written yet
            try:
                check(data)
                whole += 1
            except TornFile as exc:
                torn.append(f"{name}: {exc}")
    Path(report).write_text(json.dumps({"whole": whole, "torn": torn[:20], "n_torn": len(torn)}))


def encoded_documents(writer: int, size: int, n: int) -> list[bytes]:
    return [json.dumps(document(writer, v, size + 4099 * v)).encode() for v in range(n)]


def rewrite_forever(path: str, writer: int, size: int, started: str) -> None:
    """Replace `path` with ever new documents until killed; encoded beforehand, so that nearly all
    of the time is spent inside the write the test means to interrupt."""
    from persona_assets.runs.storage import atomic_write_bytes

    documents = encoded_documents(writer, size, 4)
    atomic_write_bytes(Path(path), documents[0])
    Path(started).touch()
    i = 1
    while True:
        atomic_write_bytes(Path(path), documents[i % len(documents)])
        i += 1


def add_pairs(directory: str, keys: list[str], pair_keys: list[str], barrier: Any) -> None:
    """Add each pair to each entry with its own read-modify-write, as a scoring run does."""
    from persona_assets.measure.divergence_store import DivergenceCache

    cache = DivergenceCache(Path(directory))
    barrier.wait()
    for pk in pair_keys:
        for key in keys:
            entry = cache.get(key) or {"n_tokens": 3, "pairs": {}}
            entry["pairs"][pk] = {"js": 0.1, "kl_ab": 0.2, "kl_ba": 0.3}
            cache.put(key, entry)


def alert(writer: int, i: int, size: int) -> dict[str, Any]:
    """A large alert of its own: several append writes long, with its body's checksum."""
    return {"writer": writer, "i": i, **{k: v for k, v in document(writer, i, size).items() if k in ("body", "sha256")}}


def append_alerts(path: str, writer: int, n: int, size: int, barrier: Any) -> None:
    from persona_assets.runs.alerts import append_jsonl

    records = [alert(writer, i, size) for i in range(n)]
    barrier.wait()
    for record in records:
        result = append_jsonl(Path(path), record)
        if not result.delivered:
            raise RuntimeError(result.error)


def wait_for(path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout_s} s")
        time.sleep(0.01)
