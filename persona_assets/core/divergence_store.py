"""Content-addressed, resumable per-response divergence results: only new work is ever computed.

One entry per teacher-forced response, under <data dir>/cache/divergences/<key[:2]>/<key>.json.
The entry's key covers everything that fixes the response and how it is scored:
  - the model's fingerprint, dtype and device kind (CPU reference path vs GPU fast path),
  - the response's generation cache key, its token ids and the generator's prompt ids,
  - `DIVERGENCE_CODE_VERSION` (bump it when the divergence math or the teacher forcing changes).
Inside an entry, every scoring pair (a, b) has its own record keyed by `pair_key` — the prompt ids
of the two scoring personas (for this question) — holding the response-mean JS, KL(a‖b), KL(b‖a).

Consequences
- Adding personas or questions computes only new responses and, for existing responses, only the
  new pairs: with pair-own averaging an existing response by A needs (A, C) for a new persona C,
  scored under A's and C's prompts only. (A's own forward is recomputed for it: the per-token
  distributions are not kept, only their response means.)
- Removing a persona drops its pairs from the matrices; nothing is recomputed.
- Entries are written atomically (temporary file + rename), one response at a time as its pairs
  complete, so a killed run loses at most the responses in flight (`responses_per_batch`) and a
  restart finds everything else. A torn or unreadable entry is recomputed, never trusted.

Memory does not grow with the number of personas: a response's missing pairs are split into
scoring passes of at most `max_scorers_per_pass` scoring sequences (for pair-own: the generator
plus `max_scorers_per_pass − 1` others); pair-own needs N − 1 pairs per response, never N².

No dagster import: usable from a notebook with any object that has `batch_response_divergences`
(the LLM resources, `CpuLLM(model=...)`, work outside Dagster).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from persona_assets.storage import atomic_write_text, exclusive_lock

DIVERGENCE_CODE_VERSION = "1"
VALUES = ("js", "kl_ab", "kl_ba")


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def response_key(
    *,
    model_fingerprint: str,
    dtype: str,
    device_kind: str,
    generation_key: str,
    response_ids: Sequence[int],
    generator_prompt_ids: Sequence[int],
    code_version: str = DIVERGENCE_CODE_VERSION,
) -> str:
    """Key of one response's entry (see the module docstring for what it covers)."""
    return _digest(
        {
            "model": model_fingerprint,
            "dtype": dtype,
            "device_kind": device_kind,
            "generation_key": generation_key,
            "response_ids": [int(t) for t in response_ids],
            "generator_prompt_ids": [int(t) for t in generator_prompt_ids],
            "code_version": code_version,
        }
    )


def pair_key(prompt_ids_a: Sequence[int], prompt_ids_b: Sequence[int]) -> str:
    """Key of one scoring pair within a response's entry: the two scorers' prompt ids, in order."""
    return _digest([[int(t) for t in prompt_ids_a], [int(t) for t in prompt_ids_b]])[:32]


class DivergenceCache:
    """Response entries: {"n_tokens": int, "pairs": {pair_key: {"js", "kl_ab", "kl_ba"}}}."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None  # a corrupt entry is recomputed, never trusted
        return record if isinstance(record, dict) and isinstance(record.get("pairs"), dict) else None

    def put(self, key: str, record: dict[str, Any]) -> None:
        # Another run may have added pairs to this entry since it was read: merge, under the
        # directory lock, so neither run's pairs are lost (see persona_assets.storage).
        with exclusive_lock(self.directory):
            on_disk = self.get(key)
            if on_disk is not None:
                record = {**record, "pairs": {**on_disk["pairs"], **record["pairs"]}}
            atomic_write_text(self._path(key), json.dumps(record, sort_keys=True))

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("*/*.json")) if self.directory.is_dir() else 0


@dataclass
class ResponseJob:
    """One response to score: its cache key, token ids, the scorers' prompts and the pairs it needs."""

    key: str
    response_ids: list[int]
    prompts: dict[int, list[int]]  # persona index → prompt ids (system + this question)
    pairs: list[tuple[int, int]]  # (a, b) persona indices
    pair_keys: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.pair_keys:
            self.pair_keys = [pair_key(self.prompts[a], self.prompts[b]) for a, b in self.pairs]


def scoring_passes(pairs: Sequence[tuple[int, int]], max_scorers: int) -> list[tuple[list[int], list[tuple[int, int]], list[int]]]:
    """Split pairs into passes that each teacher-force at most `max_scorers` sequences.

    Returns (scorer persona indices, pairs as local indices into them, positions in `pairs`) per
    pass. Greedy in the given order: for pair-own pairs (g, o1), (g, o2), … every pass is g plus up
    to max_scorers − 1 others. Deterministic: the same pairs always give the same passes.
    """
    if max_scorers < 2:
        raise ValueError(f"max_scorers_per_pass must be ≥ 2 (a pair needs two scorers), got {max_scorers}")
    passes: list[tuple[list[int], list[tuple[int, int]], list[int]]] = []
    scorers: list[int] = []
    members: list[int] = []
    for position, (a, b) in enumerate(pairs):
        needed = [s for s in dict.fromkeys((a, b)) if s not in scorers]
        if members and len(scorers) + len(needed) > max_scorers:
            passes.append(_finish_pass(scorers, pairs, members))
            scorers, members = [], []
            needed = list(dict.fromkeys((a, b)))
        scorers.extend(needed)
        members.append(position)
    if members:
        passes.append(_finish_pass(scorers, pairs, members))
    return passes


def _finish_pass(scorers: list[int], pairs: Sequence[tuple[int, int]], members: list[int]):
    local = {s: k for k, s in enumerate(scorers)}
    return list(scorers), [(local[pairs[m][0]], local[pairs[m][1]]) for m in members], list(members)


@dataclass
class ScoreStats:
    responses: int = 0
    responses_complete_in_cache: int = 0
    responses_computed: int = 0
    pairs_computed: int = 0
    pairs_from_cache: int = 0
    teacher_forced_sequences: int = 0
    teacher_forced_tokens: int = 0  # response tokens of every teacher-forced sequence
    seconds: float = 0.0  # scoring and writing, after `prepare`

    def add(self, other: "ScoreStats") -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def score_missing(
    llm: Any,
    jobs: Sequence[ResponseJob],
    cache: DivergenceCache,
    *,
    max_scorers_per_pass: int,
    responses_per_batch: int,
    pair_chunk_size: int = 4,
    log: Callable[[str], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    prepare: Callable[[], Any] | None = None,
) -> ScoreStats:
    """Compute and store every pair the jobs need that the cache lacks; returns what was done.

    Jobs are processed `responses_per_batch` at a time (one `llm.batch_response_divergences`
    call, so the GPU path can pack their passes together); each response's entry is written as
    soon as its batch returns. Host memory is bounded by the batch, not by the run. `prepare`
    (e.g. loading the model) runs once before the first batch, only if there is work, and is
    not counted in `stats.seconds`.
    """
    if responses_per_batch < 1:
        raise ValueError(f"responses_per_batch must be ≥ 1, got {responses_per_batch}")
    stats = ScoreStats(responses=len(jobs))
    pending: list[tuple[ResponseJob, dict[str, Any], list[int]]] = []
    for job in jobs:
        entry = cache.get(job.key) or {"n_tokens": len(job.response_ids), "pairs": {}}
        missing = [k for k, pk in enumerate(job.pair_keys) if pk not in entry["pairs"]]
        stats.pairs_from_cache += len(job.pairs) - len(missing)
        if missing:
            pending.append((job, entry, missing))
        else:
            stats.responses_complete_in_cache += 1
    total = len(pending)
    if log:
        log(f"divergences: {stats.responses_complete_in_cache} responses complete in the cache, {total} to score")
    if pending and prepare:
        prepare()
    started = time.perf_counter()
    for start in range(0, total, responses_per_batch):
        batch = pending[start : start + responses_per_batch]
        items, owners = [], []
        for b, (job, _, missing) in enumerate(batch):
            wanted = [job.pairs[k] for k in missing]
            for scorers, local_pairs, positions in scoring_passes(wanted, max_scorers_per_pass):
                items.append(([job.prompts[s] for s in scorers], job.response_ids, local_pairs))
                owners.append((b, [missing[p] for p in positions]))
                stats.teacher_forced_sequences += len(scorers)
                stats.teacher_forced_tokens += len(scorers) * len(job.response_ids)
        results = llm.batch_response_divergences(items, pair_chunk_size=pair_chunk_size)
        for (b, pair_indices), result in zip(owners, results):
            job, entry, _ = batch[b]
            means = [r.mean(dim=1).tolist() for r in (result.js, result.kl_ab, result.kl_ba)]
            for local, k in enumerate(pair_indices):
                entry["pairs"][job.pair_keys[k]] = {name: means[v][local] for v, name in enumerate(VALUES)}
        for job, entry, missing in batch:
            cache.put(job.key, entry)
            stats.responses_computed += 1
            stats.pairs_computed += len(missing)
        if progress:
            progress(min(start + responses_per_batch, total), total)
    stats.seconds = time.perf_counter() - started
    return stats


def shard_of(jobs: Sequence[ResponseJob], lengths: Sequence[int], shard: int, n_shards: int) -> list[ResponseJob]:
    """The jobs of shard `shard` of `n_shards`: round-robin over jobs sorted by response length.

    Depends only on the responses, never on the cache, so shards running at the same time agree
    on who does what; the length order balances the shards' token counts.
    """
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard {shard} outside 0..{n_shards - 1}")
    order = sorted(range(len(jobs)), key=lambda i: (lengths[i], jobs[i].key))
    return [jobs[i] for i in order[shard::n_shards]]


def cached_rows(jobs: Sequence[ResponseJob], cache: DivergenceCache) -> list[list[dict[str, float]] | None]:
    """Per job, its pairs' values from the cache in `job.pairs` order (None where any is missing)."""
    out: list[list[dict[str, float]] | None] = []
    for job in jobs:
        entry = cache.get(job.key)
        if entry is None or any(pk not in entry["pairs"] for pk in job.pair_keys):
            out.append(None)
        else:
            out.append([entry["pairs"][pk] for pk in job.pair_keys])
    return out
