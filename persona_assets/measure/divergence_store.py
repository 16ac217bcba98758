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

Faults
- Out of accelerator memory: the batch is retried with half the responses, then (at one
  response) half the scorers per pass, down to one pair; each step is logged. Only if one pair of
  one response does not fit does scoring stop, with a message saying so.
- NaN/inf logits or NaN results: scoring stops with an error naming the response (generator,
  question), the scoring persona and the token position; nothing of that batch is written, and a
  cache entry holding NaN is never trusted. An empty response (no tokens) stops scoring before
  any model work: a mean over zero tokens has no value.

The keys live in `cache_keys`, the planning (jobs, passes, batches, shards) in `scoring_plan`; this
module holds the cache and the scoring.

No dagster import: usable from a notebook with any object that has `batch_response_divergences`
(the LLM resources, `CpuLLM(model=...)`, work outside Dagster).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from persona_assets.measure.scoring_faults import (
    NonFiniteLogitsError,
    TeacherForcingError,
    free_accelerator_memory,
    is_out_of_memory,
)
from persona_assets.measure.cache_keys import DIVERGENCE_CODE_VERSION, pair_key, response_key  # noqa: F401  (re-exported)
from persona_assets.measure.scoring_plan import (  # noqa: F401  (re-exported: one import for the store's users)
    ResponseJob,
    batch_end,
    scoring_passes,
    shard_of,
)
from persona_assets.runs.storage import atomic_write_text, cache_entry_path, exclusive_lock, read_pairs_entry

VALUES = ("js", "kl_ab", "kl_ba")


class DivergenceCache:
    """Response entries: {"n_tokens": int, "pairs": {pair_key: {"js", "kl_ab", "kl_ba"}}}."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def get(self, key: str) -> dict[str, Any] | None:
        # A NaN-poisoned entry is recomputed too, like a corrupt one.
        return read_pairs_entry(cache_entry_path(self.directory, key), parse_constant=_reject_nan)

    def put(self, key: str, record: dict[str, Any]) -> None:
        poisoned = [pk for pk, values in record.get("pairs", {}).items() if any(_is_nan(v) for v in values.values())]
        if poisoned:
            raise ValueError(f"divergence entry {key[:12]}: NaN values for pairs {poisoned}; not cached")
        # Another run may have added pairs to this entry since it was read: merge, under the
        # directory lock, so neither run's pairs are lost (see persona_assets.runs.storage).
        with exclusive_lock(self.directory):
            on_disk = self.get(key)
            if on_disk is not None:
                record = {**record, "pairs": {**on_disk["pairs"], **record["pairs"]}}
            atomic_write_text(cache_entry_path(self.directory, key), json.dumps(record, sort_keys=True))

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("*/*.json")) if self.directory.is_dir() else 0


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _reject_nan(constant: str) -> float:
    # KL may legitimately be +inf (a token with P_a > 0 = P_b); NaN never is a divergence.
    if constant == "NaN":
        raise ValueError("NaN in a divergence entry")
    return float(constant)


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
    warn: Callable[[str], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    prepare: Callable[[], Any] | None = None,
) -> ScoreStats:
    """Compute and store every pair the jobs need that the cache lacks; returns what was done.

    Jobs are processed `responses_per_batch` at a time (one `llm.batch_response_divergences`
    call, so the GPU path can pack their passes together), grouped by their scorers' prompts (the
    responses to one question together, so a call can share those prompts' K/V); each response's
    entry is written as soon as its batch returns. Host memory is bounded by the batch, not by the run. `prepare`
    (e.g. loading the model) runs once before the first batch, only if there is work, and is
    not counted in `stats.seconds`.

    Out of accelerator memory, the batch is retried smaller (see the module docstring) and the
    smaller size is kept for the rest of the run; `warn` (default `log`) says so each time.
    Raises TeacherForcingError for empty responses, non-finite logits or results, and when one
    pair of one response does not fit in memory.
    """
    if responses_per_batch < 1:
        raise ValueError(f"responses_per_batch must be ≥ 1, got {responses_per_batch}")
    if max_scorers_per_pass < 2:
        raise ValueError(f"max_scorers_per_pass must be ≥ 2 (a pair needs two scorers), got {max_scorers_per_pass}")
    warn = warn or log
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
    empty = [job.describe() for job, _, _ in pending if not job.response_ids]
    if empty:
        raise TeacherForcingError(
            f"{len(empty)} empty responses (no tokens) cannot be teacher-forced (a mean over zero tokens has no "
            "value): "
            + "; ".join(empty[:10])
            + ". Regenerate them (e.g. a larger max_new_tokens) or drop those personas/questions."
        )
    # Responses scored under the same prompts (those to one question) go to the same calls, where
    # the engine can compute each prompt's K/V once for all of them (shared prefixes). Stable: the
    # jobs' order within a group is kept, and which call a response lands in never changes its values
    # beyond float rounding.
    pending.sort(key=lambda item: _prompt_group(item[0]))
    groups = [_prompt_group(job) for job, _, _ in pending]
    whole_groups = bool(getattr(llm, "shared_prefixes", False))
    total = len(pending)
    if log:
        log(f"divergences: {stats.responses_complete_in_cache} responses complete in the cache, {total} to score")
    if pending and prepare:
        prepare()
    started = time.perf_counter()
    batch_size, scorers_per_pass = responses_per_batch, max_scorers_per_pass
    done = 0
    while done < total:
        batch = pending[done : batch_end(groups, done, batch_size, whole_groups)]
        out_of_memory = False
        try:
            batch_stats = _score_batch(llm, batch, scorers_per_pass, pair_chunk_size)
        except Exception as error:  # noqa: BLE001 - only out-of-memory is handled, the rest re-raised
            if not is_out_of_memory(error):
                raise
            out_of_memory = True  # handled below, once the exception (and its frames' tensors) is gone
        if out_of_memory:
            free_accelerator_memory()
            largest_pass = max(
                len(scorers)
                for job, _, missing in batch
                for scorers, _, _ in scoring_passes([job.pairs[k] for k in missing], scorers_per_pass)
            )
            if len(batch) > 1:
                batch_size = len(batch) // 2
            elif largest_pass > 2:
                scorers_per_pass = max(2, largest_pass // 2)
            else:
                raise TeacherForcingError(
                    f"out of accelerator memory teacher-forcing one pair of {batch[0][0].describe()} "
                    f"({len(batch[0][0].response_ids)} tokens): even one response under two personas does not fit. "
                    "Use a GPU with more memory, a smaller dtype, or shorter responses (max_new_tokens)."
                )
            if warn:
                warn(
                    f"teacher forcing: out of accelerator memory with {len(batch)} responses per batch, "
                    f"passes of up to {largest_pass} scorers; "
                    f"halved the batch, retrying with {batch_size} responses per batch, {scorers_per_pass} scorers per "
                    "pass"
                )
            continue
        for job, entry, missing in batch:
            cache.put(job.key, entry)
            stats.responses_computed += 1
            stats.pairs_computed += len(missing)
        stats.add(batch_stats)
        done += len(batch)
        if progress:
            progress(done, total)
    stats.seconds = time.perf_counter() - started
    return stats


def _prompt_group(job: ResponseJob) -> tuple[tuple[int, ...], ...]:
    """The scorers' prompts of a job, in a fixed order: equal for every response to one question."""
    return tuple(sorted(tuple(int(t) for t in prompt) for prompt in job.prompts.values()))


def _score_batch(
    llm: Any, batch: list[tuple[ResponseJob, dict[str, Any], list[int]]], max_scorers: int, pair_chunk_size: int
) -> ScoreStats:
    """Score one batch into its entries (in memory: nothing is written if anything fails)."""
    stats = ScoreStats()
    items, owners = [], []
    for b, (job, _, missing) in enumerate(batch):
        wanted = [job.pairs[k] for k in missing]
        for scorers, local_pairs, positions in scoring_passes(wanted, max_scorers):
            items.append(([job.prompts[s] for s in scorers], job.response_ids, local_pairs))
            owners.append((b, scorers, [missing[p] for p in positions]))
            stats.teacher_forced_sequences += len(scorers)
            stats.teacher_forced_tokens += len(scorers) * len(job.response_ids)
    try:
        results = llm.batch_response_divergences(items, pair_chunk_size=pair_chunk_size)
    except NonFiniteLogitsError as error:
        b, scorers, _ = owners[error.item]
        job = batch[b][0]
        raise TeacherForcingError(
            f"non-finite logits (NaN/inf) teacher-forcing {job.describe()} under persona "
            f"{job.persona(scorers[error.scorer])} "
            f"at response token position {error.position}: the model's output is broken (weights, dtype overflow?). "
            "Nothing of this batch was cached."
        ) from error
    new_values: list[tuple[dict[str, Any], str, dict[str, float]]] = []
    for (b, scorers, pair_indices), result in zip(owners, results):
        job = batch[b][0]
        means = [r.mean(dim=1).tolist() for r in (result.js, result.kl_ab, result.kl_ba)]
        for local, k in enumerate(pair_indices):
            values = {name: means[v][local] for v, name in enumerate(VALUES)}
            if any(math.isnan(value) for value in values.values()):
                a, c = job.pairs[k]
                raise TeacherForcingError(
                    f"NaN divergence for {job.describe()} between personas {job.persona(a)} and {job.persona(c)}: "
                    "the scores are broken. Nothing of this batch was cached."
                )
            new_values.append((batch[b][1], job.pair_keys[k], values))
    for entry, key, values in new_values:
        entry["pairs"][key] = values
    return stats


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
