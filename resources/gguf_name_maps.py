"""One gguf tensor-name map per architecture and layer count while a GGUF file is converted.

transformers maps GGUF tensor names to its own by walking the model's modules and, for each of them,
building gguf's `TensorNameMap` for the architecture and layer count again: about 400 identical maps
for the embedded model, 3 s of its conversion on two cores. A map depends only on those two arguments
and is only read, so the conversion shares one (the converted files are byte-identical either way).

No dagster or torch import here.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()


@contextmanager
def shared_tensor_name_maps() -> Iterator[None]:
    """Meanwhile `gguf.get_tensor_name_map` returns one map per (architecture, layer count)."""
    import gguf

    with _lock:  # conversions in two threads of one process: the second waits rather than nesting the patch
        original = gguf.get_tensor_name_map
        gguf.get_tensor_name_map = functools.cache(original)
        try:
            yield
        finally:
            gguf.get_tensor_name_map = original
