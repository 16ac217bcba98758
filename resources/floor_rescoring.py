"""Re-score a small sample of responses in the other batch compositions: the run's noise floor.

Compositions (the first is the reference the others are compared with):
- run: the sampled responses through the run's own scoring call, `llm.batch_response_divergences`,
  all together (GPU: packed into shared forwards with each other; CPU: each response's scorers in
  one right-padded batch, as the run scores them);
- own_batch (GPU only): each response in a call of its own: its scorers padded together, no other
  response in the forward;
- alone: every scoring sequence in a forward of its own (no padding, no packing).
A run that scores in reduced precision also re-scores the sample in float32 through the run's own
call (the weights upcast in place and back, `resources.weight_upcast`): the scoring-precision record.
Each sampled response is scored with its first scoring pass (at most `max_scorers_per_pass`
sequences, as in the run), so the cost is a few forwards whatever the number of personas.

The comparison itself is `persona_assets.measure.noise_floor`. No dagster import; torch is imported
lazily (the asset module that calls this must load without it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from persona_assets.measure.divergence_store import ResponseJob, scoring_passes
from persona_assets.measure.noise_floor import (
    VALUES,
    difference_stats,
    largest_differences,
    noise_floor_summary,
    not_measured,
    sample_positions,
)
from persona_assets.measure.precision import REFERENCE, generation_precision, scoring_precision

RUN = "run"
OWN_BATCH = "own_batch"
ALONE = "alone"


def _packs_responses(llm: Any) -> bool:
    """The CUDA resource (GpuLLM) packs responses into shared forwards; the CPU one scores one at a time."""
    return str(llm.describe()["device"]).startswith("cuda")


def _arrays(result: Any) -> dict[str, np.ndarray]:
    return {name: getattr(result, name).detach().double().cpu().numpy() for name in VALUES}


def _scored_alone(llm: Any, item: tuple, pair_chunk_size: int, packs: bool) -> Any:
    """Each scoring sequence in its own forward, then the divergences the run's path computes."""
    import torch

    from persona_assets.measure.divergence import pair_divergences

    prompts, response, pairs = item
    engine = llm.scoring_engine()
    if packs:
        from resources.fast_divergence import fast_pair_divergences
        from resources.fast_engine import lm_head_logits, packed_hidden_states

        head = engine.model.get_output_embeddings()
        response = [int(t) for t in response]
        with torch.inference_mode():
            states = [
                packed_hidden_states(engine, [list(p) + response[:-1]], [(0, len(p) - 1, len(response))])[0]
                for p in prompts
            ]
            logits = lm_head_logits(torch.stack(states), head.weight, getattr(head, "bias", None))
            return fast_pair_divergences(logits, pairs)
    logits = torch.cat([engine.response_logits([p], response) for p in prompts])
    return pair_divergences(logits, pairs, chunk_size=pair_chunk_size)


def measure_scoring_precision(
    llm: Any, items: Sequence[tuple], run: list[dict[str, np.ndarray]], pair_chunk_size: int
) -> dict[str, Any]:
    """The run's scoring of `items` (`run`) against their float32 re-scoring by the same call."""
    dtype = llm.describe()["scoring_dtype"]
    if dtype == REFERENCE:
        return scoring_precision(dtype)
    import torch

    from resources.weight_upcast import engine_in_dtype

    started = time.monotonic()
    try:
        with engine_in_dtype(llm.engine, REFERENCE):
            reference = [
                _arrays(r)
                for r in llm.batch_response_divergences(items, pair_chunk_size=pair_chunk_size, dtype=REFERENCE)
            ]
    except torch.OutOfMemoryError as error:
        return scoring_precision(
            dtype, reason=f"not measured: the float32 upcast of the weights ran out of memory ({error})"
        )
    by_value = difference_stats(reference, run)
    return scoring_precision(
        dtype, by_value, largest_differences({REFERENCE: by_value}), seconds=time.monotonic() - started
    )


def noise_floor_sample(
    jobs: Sequence[ResponseJob], descriptions: Sequence[dict[str, Any]], *, samples: int, max_scorers_per_pass: int
) -> tuple[list[tuple], list[dict[str, Any]]]:
    """The responses the floor re-scores (evenly spread over `jobs`): (prompts, response, pairs) items, their
    records."""
    items, sampled = [], []
    for position in sample_positions(len(jobs), samples):
        job = jobs[position]
        scorers, local_pairs, _ = scoring_passes(job.pairs, max_scorers_per_pass)[0]
        items.append(([job.prompts[s] for s in scorers], job.response_ids, local_pairs))
        sampled.append(
            {
                **descriptions[position],
                "n_tokens": len(job.response_ids),
                "n_scorers": len(scorers),
                "n_pairs": len(local_pairs),
            }
        )
    return items, sampled


def measure_noise_floor(
    llm: Any,
    jobs: Sequence[ResponseJob],
    descriptions: Sequence[dict[str, Any]],
    *,
    samples: int,
    max_scorers_per_pass: int,
    pair_chunk_size: int,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Re-score `samples` responses (evenly spread over `jobs`) in every composition; the floor record.

    `descriptions[k]` says which response `jobs[k]` is (generator, question, …); it is copied into
    the record next to the sample's scorer and pair counts. `log` hears each composition as it ends.
    """
    if samples <= 0:
        return not_measured("noise-floor measurement disabled (noise_floor_samples = 0)")
    items, sampled = noise_floor_sample(jobs, descriptions, samples=samples, max_scorers_per_pass=max_scorers_per_pass)
    if not items:
        return not_measured("no responses to re-score")
    started = time.monotonic()
    say = log or (lambda message: None)
    packs = _packs_responses(llm)
    compositions = {
        RUN: (
            "the run's scoring call over the sampled responses together (packed into shared forwards)"
            if packs
            else "the run's scoring call: each response's scorers in one right-padded batch"
            + (", after the prompts' shared K/V (shared prefixes)" if getattr(llm, "shared_prefixes", False) else "")
        ),
        ALONE: "every scoring sequence in a forward of its own (no padding, no packing)",
    }
    say(f"noise floor: re-scoring {len(items)} responses in {2 + packs} batch compositions")
    run = [_arrays(r) for r in llm.batch_response_divergences(items, pair_chunk_size=pair_chunk_size)]
    say(f"noise floor: {RUN} composition scored ({time.monotonic() - started:.1f} s)")
    scored = {ALONE: [_arrays(_scored_alone(llm, item, pair_chunk_size, packs)) for item in items]}
    say(f"noise floor: {ALONE} composition scored ({time.monotonic() - started:.1f} s)")
    if packs:
        compositions[OWN_BATCH] = "each response in a call of its own: its scorers padded together, no other response"
        scored[OWN_BATCH] = [
            _arrays(llm.batch_response_divergences([item], pair_chunk_size=pair_chunk_size)[0]) for item in items
        ]
    model = llm.describe()
    record = noise_floor_summary(
        {name: difference_stats(run, other) for name, other in scored.items()},
        reference=RUN,
        compositions=compositions,
        samples=sampled,
    )
    record["dtype"] = model["scoring_dtype"]
    record["precision"] = {
        "scoring": measure_scoring_precision(llm, items, run, pair_chunk_size),
        "generation": generation_precision(model["dtype"]),
    }
    record["seconds"] = time.monotonic() - started
    say(f"noise floor measured in {record['seconds']:.1f} s")
    return record
