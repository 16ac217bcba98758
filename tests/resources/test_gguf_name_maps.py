"""The GGUF conversion builds gguf's tensor-name map once per architecture and layer count, and only meanwhile."""

from __future__ import annotations

import gguf

from resources.gguf_name_maps import shared_tensor_name_maps


def test_one_map_per_architecture_and_layer_count_while_converting():
    original = gguf.get_tensor_name_map
    llama = gguf.MODEL_ARCH.LLAMA
    with shared_tensor_name_maps():
        first = gguf.get_tensor_name_map(llama, 30)
        assert gguf.get_tensor_name_map(llama, 30) is first
        assert gguf.get_tensor_name_map(llama, 2) is not first
        assert first.mapping == original(llama, 30).mapping  # the same map as built each time
    assert gguf.get_tensor_name_map is original
    assert gguf.get_tensor_name_map(llama, 30) is not gguf.get_tensor_name_map(llama, 30)


def test_the_patch_is_undone_when_the_conversion_fails():
    original = gguf.get_tensor_name_map
    try:
        with shared_tensor_name_maps():
            raise RuntimeError("conversion failed")
    except RuntimeError:
        pass
    assert gguf.get_tensor_name_map is original
