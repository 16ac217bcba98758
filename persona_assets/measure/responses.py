"""The per-response records of a run, built by one function each for the assets and the benchmarks that time them.

- `missing_items`, `generate_into_cache`: greedy responses for the generation items not yet cached, stored in
  the cache (the batch halved on out-of-memory); what the generations asset runs;
- `response_records`: each item's response as the generations asset returns it (token ids, text, length);
- `pair_value_rows`: per response, one row per scoring pair with its response-mean JS and KLs (the rows of
  divergence_per_response; `aggregate.per_response_table` makes them a table).

Plain Python: the LLM is any object with `generate` and `decode`; no dagster, no pandas (the GPU benchmarks
run these on machines without pandas).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from persona_assets.measure.scoring_faults import halving_batch_on_out_of_memory


def missing_items(items: Sequence[Mapping[str, Any]], cache: Any) -> list[Mapping[str, Any]]:
    """The generation items (`generation_items`) whose key `cache` (a GenerationCache) lacks."""
    return [item for item in items if cache.get(item["key"]) is None]


def generate_into_cache(
    llm: Any,
    missing: Sequence[Mapping[str, Any]],
    cache: Any,
    *,
    max_new_tokens: int,
    batch_size: int,
    progress: Callable[..., None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> None:
    """Generate every item of `missing` and store its token ids in `cache` (nothing to do for none)."""
    if not missing:
        return
    outputs = halving_batch_on_out_of_memory(
        lambda size: llm.generate(
            [item["prompt_ids"] for item in missing], max_new_tokens=max_new_tokens, batch_size=size, progress=progress
        ),
        batch_size,
        what="generation",
        warn=warn,
    )
    for item, output in zip(missing, outputs):
        cache.put(item["key"], {"token_ids": output.token_ids, "hit_max_new_tokens": output.hit_max_new_tokens})


def response_records(items: Sequence[Mapping[str, Any]], cache: Any, decode: Callable[[list[int]], str]) -> list[dict]:
    """One record per item, from its cache entry: persona, question, token ids, decoded text, length, cut or not."""
    records = []
    for item in items:
        cached = cache.get(item["key"])
        if cached is None:
            raise KeyError(f"no cached response for persona {item['persona']!r}, question {item['question_index']}")
        records.append(
            {
                "persona": item["persona"],
                "question_index": item["question_index"],
                "question": item["question"],
                "token_ids": cached["token_ids"],
                "text": decode(cached["token_ids"]),
                "n_tokens": len(cached["token_ids"]),
                "hit_max_new_tokens": cached["hit_max_new_tokens"],
                "cache_key": item["key"],
            }
        )
    return records


def pair_value_rows(
    responses: Sequence[Mapping[str, Any]],
    jobs: Sequence[Any],
    values: Sequence[Sequence[Mapping[str, float]]],
    persona_names: Sequence[str],
) -> list[dict[str, Any]]:
    """Per response (a `response_records` record), its job's pairs with their values.

    The rows of divergence_per_response.
    """
    rows = []
    for response, job, found in zip(responses, jobs, values):
        for (a, b), value in zip(job.pairs, found):
            rows.append(
                {
                    "generator": response["persona"],
                    "question_index": response["question_index"],
                    "persona_a": persona_names[a],
                    "persona_b": persona_names[b],
                    "js": value["js"],
                    "kl_ab": value["kl_ab"],
                    "kl_ba": value["kl_ba"],
                    "n_tokens": response["n_tokens"],
                    "n_scored_positions": len(job.response_ids),
                }
            )
    return rows
