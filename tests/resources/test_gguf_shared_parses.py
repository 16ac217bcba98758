"""The GGUF conversion builds gguf's tensor-name map once per architecture and layer count, and its file reader
once per file, and only meanwhile."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest

from resources.gguf_shared_parses import one_reader_per_file, shared_gguf_parses


@pytest.fixture
def small_gguf_file(tmp_path) -> Path:
    """A small real GGUF file (its architecture, a block count and one tensor), written by gguf's own writer."""
    path = tmp_path / "small.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.add_tensor("token_embd.weight", np.arange(12, dtype=np.float32).reshape(3, 4))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_one_map_per_architecture_and_layer_count_while_converting():
    original = gguf.get_tensor_name_map
    llama = gguf.MODEL_ARCH.LLAMA
    with shared_gguf_parses():
        first = gguf.get_tensor_name_map(llama, 30)
        assert gguf.get_tensor_name_map(llama, 30) is first
        assert gguf.get_tensor_name_map(llama, 2) is not first
        assert first.mapping == original(llama, 30).mapping  # the same map as built each time
    assert gguf.get_tensor_name_map is original
    assert gguf.get_tensor_name_map(llama, 30) is not gguf.get_tensor_name_map(llama, 30)


def test_one_reader_per_file_while_converting(small_gguf_file, tmp_path):
    original = gguf.GGUFReader
    link = tmp_path / "same.gguf"
    link.symlink_to(small_gguf_file)
    with shared_gguf_parses():
        first = gguf.GGUFReader(small_gguf_file)
        assert type(first) is original and "llama.block_count" in first.fields  # gguf's own reader, parsed
        assert [tensor.name for tensor in first.tensors] == ["token_embd.weight"]
        assert gguf.GGUFReader(str(small_gguf_file)) is first and gguf.GGUFReader(link) is first
    assert gguf.GGUFReader is original  # afterwards each call parses the file again


def test_readers_for_writing_are_not_shared():
    made = []
    reader = one_reader_per_file(lambda path, mode: made.append((path, mode)) or object())
    assert reader("a.gguf") is reader("a.gguf") and reader("a.gguf", "r+") is not reader("a.gguf", "r+")
    assert reader("b.gguf") is not reader("a.gguf")
    assert made == [("a.gguf", "r"), ("a.gguf", "r+"), ("a.gguf", "r+"), ("b.gguf", "r")]


def test_the_patches_are_undone_when_the_conversion_fails():
    original_maps, original_reader = gguf.get_tensor_name_map, gguf.GGUFReader
    with pytest.raises(RuntimeError, match="conversion failed"):
        with shared_gguf_parses():
            raise RuntimeError("conversion failed")
    assert gguf.get_tensor_name_map is original_maps and gguf.GGUFReader is original_reader
