"""The noise floor, measured once per set of inputs: a run whose inputs did not change reads it back.

The floor re-scores a few responses in other batch compositions (seconds to minutes). Its value
depends only on what is scored and how: the sampled responses (each job's cache key, the scorers'
prompts, the pairs), the model and its precision/engine settings (`llm.describe()` plus the
scoring switches), the chunking, the code of the divergence and the floor, and the torch and
transformers versions (kernels). `noise_floor_key` covers all of these; the record is stored under
<data dir>/cache/noise_floor/<key>.json, written atomically. A torn or unreadable entry is
measured again, never trusted.

No dagster import; torch is imported only when the floor is measured.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from persona_assets.measure.divergence_store import DIVERGENCE_CODE_VERSION, ResponseJob
from persona_assets.measure.noise_floor import not_measured, sample_positions
from persona_assets.runs.storage import atomic_write_text
from resources.floor_rescoring import measure_noise_floor, noise_floor_sample

# Bump when what the floor measures, or how, changes (compositions, statistics, precision record).
NOISE_FLOOR_CODE_VERSION = "1"
# The resource switches that change how teacher forcing computes (GpuLLM has all, CpuLLM some).
SCORING_SWITCHES = ("shared_prefixes", "teacher_forcing_batch_tokens", "liger_teacher_forcing")


def scoring_switches(llm: Any) -> dict[str, Any]:
    """The resource's `SCORING_SWITCHES`; GpuLLM's `liger_teacher_forcing: null` (when available) as what it
    resolved to, so a floor measured with Liger's kernels is not read back for a run without them."""
    switches = {name: getattr(llm, name, None) for name in SCORING_SWITCHES}
    uses_liger = getattr(llm, "uses_liger", None)
    if switches["liger_teacher_forcing"] is None and uses_liger is not None:
        switches["liger_teacher_forcing"] = uses_liger()
    return switches


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def noise_floor_key(
    llm: Any,
    items: Sequence[tuple],
    sampled: Sequence[dict[str, Any]],
    jobs_sampled: Sequence[ResponseJob],
    *,
    pair_chunk_size: int,
) -> str:
    """Digest of everything the floor record depends on (see the module docstring)."""
    payload = {
        "model": llm.describe(),
        "switches": scoring_switches(llm),
        "responses": [job.key for job in jobs_sampled],
        "items": [
            [[list(map(int, p)) for p in prompts], list(map(int, response)), [list(pair) for pair in pairs]]
            for prompts, response, pairs in items
        ],
        "sampled": list(sampled),
        "pair_chunk_size": pair_chunk_size,
        "divergence_code_version": DIVERGENCE_CODE_VERSION,
        "noise_floor_code_version": NOISE_FLOOR_CODE_VERSION,
        "packages": {name: _version(name) for name in ("torch", "transformers")},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def noise_floor_once(
    llm: Any,
    jobs: Sequence[ResponseJob],
    descriptions: Sequence[dict[str, Any]],
    cache_dir: Path,
    *,
    samples: int,
    max_scorers_per_pass: int,
    pair_chunk_size: int,
    log: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], bool]:
    """The floor record and whether it came from the cache (measured and stored otherwise).

    The record read back is the one stored, except `seconds`: the time this call took.
    """
    if samples <= 0:
        return not_measured("noise-floor measurement disabled (noise_floor_samples = 0)"), False
    started = time.monotonic()
    items, sampled = noise_floor_sample(jobs, descriptions, samples=samples, max_scorers_per_pass=max_scorers_per_pass)
    chosen = [jobs[p] for p in sample_positions(len(jobs), samples)]
    key = noise_floor_key(llm, items, sampled, chosen, pair_chunk_size=pair_chunk_size)
    path = Path(cache_dir) / f"{key}.json"
    if path.is_file():
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = None  # torn or unreadable: measured again
        if isinstance(record, dict):
            if log:
                log(f"noise floor: inputs unchanged since it was measured, read from {path}")
            return {**record, "seconds": time.monotonic() - started}, True
    record = measure_noise_floor(
        llm,
        jobs,
        descriptions,
        samples=samples,
        max_scorers_per_pass=max_scorers_per_pass,
        pair_chunk_size=pair_chunk_size,
        log=log,
    )
    if items:
        atomic_write_text(path, json.dumps(record, sort_keys=True))
    return record, False
