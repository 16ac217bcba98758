"""Content-addressed store of the per-token pass (logit lens, position profile, vocabulary terms).

One entry per response, under <data dir>/cache/token_profiles/<key[:2]>/<key>.json; its key covers the
response's divergence key (model fingerprint, dtype, device kind, generation, token ids, generator
prompt, divergence code version), the lens layers, how many vocabulary terms are kept and
`PROFILE_CODE_VERSION`. Inside, one record per scoring pair (keyed like the divergence store):

  lens:      {layer: {"js", "kl_ab", "kl_ba"}}  response means per lens layer (the last = the output)
  js_tokens: [T floats]                        per-token output JS (the position profile's input)
  kl_ab_sum, kl_ba_sum                         Σ_t KL(a‖b), Σ_t KL(b‖a) of the output
  terms_ab, terms_ba: {"ids", "values", "sum"} the top k vocabulary terms of Σ_t KL, and the sum of all V

A response lacking any of its pairs is recomputed whole (a new persona recomputes the responses it
is paired with). Entries are written atomically as each batch returns: a killed run resumes.
No dagster import; the LLM is any object with `token_profiles(items, layers, top_k=...)`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from persona_assets.measure.scoring_plan import ResponseJob, scoring_passes
from persona_assets.runs.storage import atomic_write_text, cache_entry_path, read_pairs_entry

PROFILE_CODE_VERSION = "1"


def profile_key(job_key: str, layers: Sequence[int], top_k_stored: int) -> str:
    payload = {
        "job": job_key,
        "layers": [int(x) for x in layers],
        "top_k": int(top_k_stored),
        "v": PROFILE_CODE_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class ProfileCache:
    """Response entries {"layers", "n_positions", "pairs": {pair_key: record}} (module docstring)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def get(self, key: str) -> dict[str, Any] | None:
        return read_pairs_entry(cache_entry_path(self.directory, key))

    def put(self, key: str, record: dict[str, Any]) -> None:
        atomic_write_text(cache_entry_path(self.directory, key), json.dumps(record, sort_keys=True))


def _record(profile: Any, local: int) -> dict[str, Any]:
    """The stored record of pair `local` of one pass's profile (a `TokenProfile`)."""

    def terms(direction: str) -> dict[str, Any]:
        return {
            "ids": [int(i) for i in getattr(profile, f"top_ids_{direction}")[local]],
            "values": [float(v) for v in getattr(profile, f"top_values_{direction}")[local]],
            "sum": float(getattr(profile, f"term_sum_{direction}")[local]),
        }

    return {
        "lens": {
            str(layer): {
                "js": float(profile.lens_js[k, local].mean()),
                "kl_ab": float(profile.lens_kl_ab[k, local].mean()),
                "kl_ba": float(profile.lens_kl_ba[k, local].mean()),
            }
            for k, layer in enumerate(profile.layers)
        },
        "js_tokens": [float(v) for v in profile.output_js[local]],
        "kl_ab_sum": float(profile.lens_kl_ab[-1, local].sum()),
        "kl_ba_sum": float(profile.lens_kl_ba[-1, local].sum()),
        "terms_ab": terms("ab"),
        "terms_ba": terms("ba"),
    }


def complete_entry(entry: dict[str, Any] | None, job: ResponseJob) -> bool:
    return entry is not None and all(pk in entry["pairs"] for pk in job.pair_keys)


def score_missing_profiles(
    llm: Any,
    jobs: Sequence[ResponseJob],
    cache: ProfileCache,
    layers: Sequence[int],
    *,
    top_k_stored: int,
    max_scorers_per_pass: int,
    responses_per_batch: int,
    progress: Callable[[int, int], None] | None = None,
    prepare: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """Run the per-token pass for every job whose entry is missing or incomplete; returns counts and seconds.

    A job's pairs are split into passes of at most `max_scorers_per_pass` scorers (as the divergence step
    splits them); `responses_per_batch` jobs go to one `llm.token_profiles` call, then to the cache.
    """
    pending = [job for job in jobs if not complete_entry(cache.get(profile_key(job.key, layers, top_k_stored)), job)]
    stats = {"responses": len(jobs), "responses_from_cache": len(jobs) - len(pending), "responses_computed": 0}
    if pending and prepare:
        prepare()
    started = time.perf_counter()
    for start in range(0, len(pending), responses_per_batch):
        batch = pending[start : start + responses_per_batch]
        items, owners = [], []
        for b, job in enumerate(batch):
            for scorers, local_pairs, positions in scoring_passes(job.pairs, max_scorers_per_pass):
                items.append(([job.prompts[s] for s in scorers], job.response_ids, local_pairs))
                owners.append((b, positions))
        profiles = llm.token_profiles(items, layers, top_k=top_k_stored)
        entries = [
            {"layers": list(profiles[0].layers), "n_positions": len(job.response_ids), "pairs": {}} for job in batch
        ]
        for (b, positions), profile in zip(owners, profiles):
            for local, k in enumerate(positions):
                entries[b]["pairs"][batch[b].pair_keys[k]] = _record(profile, local)
        for job, entry in zip(batch, entries):
            cache.put(profile_key(job.key, layers, top_k_stored), entry)
        stats["responses_computed"] += len(batch)
        if progress:
            progress(start + len(batch), len(pending))
    stats["seconds"] = time.perf_counter() - started
    return stats


def cached_profiles(
    jobs: Sequence[ResponseJob], cache: ProfileCache, layers: Sequence[int], top_k_stored: int
) -> list[list[dict[str, Any]]]:
    """Per job, its pairs' records in `job.pairs` order (KeyError naming the response when one is missing)."""
    out = []
    for job in jobs:
        entry = cache.get(profile_key(job.key, layers, top_k_stored))
        if not complete_entry(entry, job):
            raise KeyError(f"token profile of {job.describe()} missing from the cache after scoring")
        out.append([entry["pairs"][pk] for pk in job.pair_keys])
    return out
