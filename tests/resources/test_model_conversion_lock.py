"""Callers that start together (pytest-xdist workers, the multiprocess executor's steps) convert a
GGUF file once: the others wait on the cache's lock and then use the first one's conversion."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from resources import model_loading
from resources.model_loading import ModelSource, local_model_path


def test_callers_starting_together_convert_the_gguf_file_once(tmp_path, monkeypatch):
    conversions = []

    def slow_conversion(source, cache_dir, key, target, **_):  # stands in for the ~15 s de-quantization
        conversions.append(key)
        time.sleep(0.5)  # the other caller arrives while this one converts
        partial = cache_dir / f".partial-{threading.get_ident()}"
        partial.mkdir()
        (partial / "converted.json").write_text("{}")
        partial.rename(target)

    # The conversion itself is replaced: this test is about who converts, not how.
    monkeypatch.setattr(model_loading, "_convert_gguf", slow_conversion)
    (tmp_path / "model.gguf").write_bytes(b"GGUF" + bytes(range(256)) * 8)  # what the conversion key reads
    source = ModelSource("gguf", str(tmp_path), "model.gguf", "model.gguf:123:456", "model")
    barrier = threading.Barrier(2)

    def resolve(_):
        barrier.wait()
        return local_model_path(source, cache_dir=tmp_path / "cache")

    with ThreadPoolExecutor(2) as pool:
        paths = list(pool.map(resolve, range(2)))
    assert len(conversions) == 1
    assert paths[0] == paths[1] and (Path(paths[0]) / "converted.json").is_file()
