"""While a GGUF file is converted, gguf's tensor-name maps and file readers are built once and shared.

transformers maps GGUF tensor names to its own by walking the model's modules and, for each of them,
building gguf's `TensorNameMap` for the architecture and layer count again: about 400 identical maps
for the embedded model, 3 s of its conversion on two cores. It also parses the file's metadata (the
49k-token vocabulary among it) with a new `GGUFReader` for the tokenizer and again for the weights,
about 1.5 s each. A map depends only on its two arguments and a reader only on its file, and both
are only read, so the conversion shares them (the converted files are byte-identical either way:
benchmarks/gguf_conversion.py).

No dagster or torch import here.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_lock = threading.Lock()


def one_reader_per_file(make_reader: Callable[..., Any]) -> Callable[..., Any]:
    """`make_reader(path)` once per file for read-only readers; other modes are built each time."""
    readers: dict[str, Any] = {}

    def reader(path: Any, mode: str = "r") -> Any:
        if mode != "r":
            return make_reader(path, mode)
        key = os.path.realpath(os.fspath(path))
        if key not in readers:
            readers[key] = make_reader(path, mode)
        return readers[key]

    return reader


@contextmanager
def shared_gguf_parses() -> Iterator[None]:
    """Meanwhile `gguf.get_tensor_name_map` returns one map per (architecture, layer count) and `gguf.GGUFReader`
    one read-only reader per file; both are restored afterwards."""
    import gguf

    with _lock:  # conversions in two threads of one process: the second waits rather than nesting the patch
        original_maps, original_reader = gguf.get_tensor_name_map, gguf.GGUFReader
        gguf.get_tensor_name_map = functools.cache(original_maps)
        gguf.GGUFReader = one_reader_per_file(original_reader)
        try:
            yield
        finally:
            gguf.get_tensor_name_map, gguf.GGUFReader = original_maps, original_reader
