"""Benchmark: the embedded GGUF file's first-use conversion as `resources.model_loading` converts (gguf's
tensor-name map built once per architecture and layer count, the file parsed by one reader), with a reader per
load (before), and with nothing shared (a map per module as well: transformers' own way).

Each way runs in a fresh process converting into an empty temporary cache, so all pay the same imports;
the converted files of all three must be byte-identical (sha256 of every file).

    PYTHONPATH=. python benchmarks/gguf_conversion.py
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.hardware import describe as hardware  # noqa: E402

WAYS = ("maps and reader shared", "maps shared, a reader per load", "nothing shared")


def convert(way: str) -> dict:
    """Convert into a fresh cache the way named; the CPU seconds, wall seconds and each file's sha256."""
    import resources.gguf_shared_parses as gguf_shared_parses
    import resources.model_loading as model_loading
    from resources.model_loading import local_model_path, resolve_model_source

    if way == WAYS[1]:
        gguf_shared_parses.one_reader_per_file = lambda make_reader: make_reader
    if way == WAYS[2]:
        model_loading.shared_gguf_parses = contextlib.nullcontext
    source = resolve_model_source("embedded")
    with tempfile.TemporaryDirectory() as cache:
        cpu, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        target = Path(local_model_path(source, cache_dir=Path(cache)))
        wall = time.perf_counter() - wall
        after = resource.getrusage(resource.RUSAGE_SELF)
        files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(target.iterdir()) if p.is_file()}
    seconds = (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)
    return {"cpu_s": seconds, "wall_s": wall, "files": files}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--way", choices=WAYS, help=argparse.SUPPRESS)  # one conversion in this process
    args = parser.parse_args(argv)
    if args.way:
        print(json.dumps(convert(args.way)))
        return
    print(f"hardware: {hardware()}")
    results = {}
    for way in WAYS:
        done = subprocess.run([sys.executable, __file__, "--way", way], capture_output=True, text=True, check=True)
        results[way] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{way:<32} {results[way]['cpu_s']:6.2f} CPU-s {results[way]['wall_s']:6.2f} s wall")
    same = all(results[way]["files"] == results[WAYS[0]]["files"] for way in WAYS)
    print(f"converted files ({len(results[WAYS[0]]['files'])}) byte-identical in all {len(WAYS)} ways: {same}")


if __name__ == "__main__":
    main()
