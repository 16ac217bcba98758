"""The files a model is made of: which weight files a model directory loads, checked whole, and a
fingerprint that changes when any of them does.

A model's identity keys the generation and divergence caches, so it must follow the weights, not
the directory's name: a fine-tune saving into the same folder must not find the old responses.
Two ways to follow them (`model_fingerprint`, a setting of the LLM resource):
- ``stat``: each weight file's name, size and modification time in nanoseconds (a few stat calls);
- ``content``: a SHA-256 of each weight file's bytes (reads every byte at each run start; also
  catches a rewrite that restores size and mtime, e.g. ``cp -p`` or ``rsync -t`` of other weights).

A hub id names the snapshot its local Hugging Face cache resolves (refs/main), without a network.

No dagster or torch import: plain files and JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from persona_assets.runs.errors import InputError

FINGERPRINT_MODES = ("stat", "content")
WEIGHT_SUFFIXES = (".safetensors", ".bin")
# The names transformers' from_pretrained looks for, in its order (modeling_utils): the first present is loaded.
LOADED_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
MAX_NAMED = 10  # a long list of missing shards is cut: the message stays one readable line
CHUNK_BYTES = 1 << 22


def check_fingerprint_mode(mode: str) -> str:
    if mode not in FINGERPRINT_MODES:
        raise InputError(f"model_fingerprint must be one of {' | '.join(FINGERPRINT_MODES)}, got {str(mode)[:100]!r}")
    return mode


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:MAX_NAMED])
    return shown if len(names) <= MAX_NAMED else f"{shown} and {len(names) - MAX_NAMED} more"


def _index_shards(index: Path, model_name: str) -> list[Path]:
    """The shard files `index` names, each checked to exist as a file (one error naming every missing one)."""
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise TypeError("weight_map is not a mapping of tensor names to file names")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise InputError(
            f"model {model_name!r}: {index.name} is not a readable weights index (JSON with a 'weight_map' of tensor "
            f"names to shard files: {str(error)[:200]}); save the model again"
        ) from error
    names = sorted(set(weight_map.values()))
    if not names:
        raise InputError(f"model {model_name!r}: {index.name} names no shard files; save the model again")
    missing = [name for name in names if not (index.parent / name).is_file()]
    if missing:
        raise InputError(
            f"model {model_name!r}: {index.name} names {len(names)} shard file(s), {len(missing)} missing or not a "
            f"file: {_listed(missing)}; copy every shard next to the index, or save the model again"
        )
    return [index.parent / name for name in names]


def loaded_weight_files(directory: Path, model_name: str) -> list[Path]:
    """The weight files `from_pretrained(directory)` reads (an index and every shard it names), all present.

    Raises InputError naming what is missing, before any weights load.
    """
    for name in LOADED_WEIGHTS:
        path = directory / name
        if path.is_file():
            return [path, *_index_shards(path, model_name)] if name.endswith(".index.json") else [path]
    others = sorted(p.name for p in directory.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    if not others:
        raise InputError(
            f"model {model_name!r}: directory has config.json but no weight files (*.safetensors or *.bin); "
            "copy the weights next to config.json"
        )
    raise InputError(
        f"model {model_name!r}: weight files {_listed(others)} but none that transformers loads "
        f"({', '.join(LOADED_WEIGHTS)}); save the model with save_pretrained"
    )


def weight_files(directory: Path, model_name: str) -> list[Path]:
    """Every weight file of the directory: those that load (checked whole) and any other *.safetensors / *.bin."""
    loaded = loaded_weight_files(directory, model_name)
    others = [p for p in directory.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file()]
    return sorted(set(loaded) | set(others))


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def file_fingerprint(path: Path, mode: str) -> str:
    """One file's identity: its name with size and mtime (ns), or with its SHA-256."""
    if check_fingerprint_mode(mode) == "content":
        return f"{path.name}:sha256-{file_digest(path)}"
    stat = path.stat()
    return f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}"


def directory_fingerprint(directory: Path, model_name: str, mode: str) -> str:
    """Config files' content, then every weight file (each shard an index names, too) by `mode`, in one digest."""
    config = hashlib.sha256()
    for name in ("config.json", "generation_config.json"):  # generation_config holds the stop tokens
        if (directory / name).is_file():
            config.update(name.encode() + b"\0" + (directory / name).read_bytes() + b"\0")
    weights = hashlib.sha256()
    for path in weight_files(directory, model_name):
        relative = Path(os.path.relpath(path, directory)).as_posix()  # an index may name any path
        weights.update(f"{relative}|{file_fingerprint(path, mode)}\n".encode())
    return f"config-{config.hexdigest()[:12]}:weights-{mode}-{weights.hexdigest()[:16]}"


def hub_snapshot(model: str, cache_dir: Path | None = None) -> tuple[str, Path] | None:
    """(commit, snapshot directory) of hub id `model` in the local Hugging Face cache, or None if it is not there.

    The commit is refs/main (what transformers loads offline), or the only snapshot when no ref is kept.
    """
    if cache_dir is None:
        from huggingface_hub import constants

        cache_dir = Path(constants.HF_HUB_CACHE)
    repo = Path(cache_dir) / ("models--" + model.replace("/", "--"))
    ref = repo / "refs" / "main"
    commit = ref.read_text(encoding="utf-8").strip() if ref.is_file() else ""
    if not commit and (repo / "snapshots").is_dir():
        snapshots = [p.name for p in (repo / "snapshots").iterdir() if p.is_dir()]
        commit = snapshots[0] if len(snapshots) == 1 else ""
    snapshot = repo / "snapshots" / commit
    if not commit or not (snapshot / "config.json").is_file():
        return None
    return commit, snapshot
