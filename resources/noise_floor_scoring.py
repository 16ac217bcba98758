"""Re-score a small sample of responses in the other batch compositions: the run's noise floor.

Compositions (the first is the reference the others are compared with):
- run: the sampled responses through the run's own scoring call, `llm.batch_response_divergences`,
  all together (GPU: packed into shared forwards with each other; CPU: each response's scorers in
  one right-padded batch, as the run scores them);
- own_batch (GPU only): each response in a call of its own: its scorers padded together, no other
  response in the forward;
- alone: every scoring sequence in a forward of its own (no padding, no packing).
Each sampled response is scored with its first scoring pass (at most `max_scorers_per_pass`
sequences, as in the run), so the cost is a few forwards whatever the number of personas.

The comparison itself is `persona_assets.core.noise_floor`. No dagster import; torch is imported
lazily (the asset module that calls this must load without it).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from persona_assets.core.divergence_store import ResponseJob, scoring_passes
from persona_assets.core.noise_floor import VALUES, difference_stats, noise_floor_summary, not_measured, sample_positions

RUN = "run"
OWN_BATCH = "own_batch"
ALONE = "alone"

FP32_NOTE = (
    "{dtype} forward vs float32 not measured in the run (it needs a float32 copy of the weights); the GPU "
    "benchmark measured 2.6e-4 relative on the response-mean JS for bf16 vs fp32 (docs/gpu.md)"
)


def _packs_responses(llm: Any) -> bool:
    """The CUDA resource (GpuLLM) packs responses into shared forwards; the CPU one scores one at a time."""
    return str(llm.describe()["device"]).startswith("cuda")


def _arrays(result: Any) -> dict[str, np.ndarray]:
    return {name: getattr(result, name).detach().double().cpu().numpy() for name in VALUES}


def _scored_alone(llm: Any, item: tuple, pair_chunk_size: int, packs: bool) -> Any:
    """Each scoring sequence in its own forward, then the divergences the run's path computes."""
    import torch

    from persona_assets.core.divergence import pair_divergences

    prompts, response, pairs = item
    engine = llm.engine
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
    logp = torch.cat([engine.response_logprobs([p], response) for p in prompts])
    return pair_divergences(logp, pairs, chunk_size=pair_chunk_size)


def measure_noise_floor(
    llm: Any,
    jobs: Sequence[ResponseJob],
    descriptions: Sequence[dict[str, Any]],
    *,
    samples: int,
    max_scorers_per_pass: int,
    pair_chunk_size: int,
) -> dict[str, Any]:
    """Re-score `samples` responses (evenly spread over `jobs`) in every composition; the floor record.

    `descriptions[k]` says which response `jobs[k]` is (generator, question, …); it is copied into
    the record next to the sample's scorer and pair counts.
    """
    if samples <= 0:
        return not_measured("noise-floor measurement disabled (noise_floor_samples = 0)")
    positions = sample_positions(len(jobs), samples)
    if not positions:
        return not_measured("no responses to re-score")
    started = time.monotonic()
    items, sampled = [], []
    for position in positions:
        job = jobs[position]
        scorers, local_pairs, _ = scoring_passes(job.pairs, max_scorers_per_pass)[0]
        items.append(([job.prompts[s] for s in scorers], job.response_ids, local_pairs))
        sampled.append(
            {**descriptions[position], "n_tokens": len(job.response_ids), "n_scorers": len(scorers), "n_pairs": len(local_pairs)}
        )
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
    run = [_arrays(r) for r in llm.batch_response_divergences(items, pair_chunk_size=pair_chunk_size)]
    scored = {ALONE: [_arrays(_scored_alone(llm, item, pair_chunk_size, packs)) for item in items]}
    if packs:
        compositions[OWN_BATCH] = "each response in a call of its own: its scorers padded together, no other response"
        scored[OWN_BATCH] = [_arrays(llm.batch_response_divergences([item], pair_chunk_size=pair_chunk_size)[0]) for item in items]
    dtype = llm.describe()["dtype"]
    notes = [] if dtype == "float32" else [FP32_NOTE.format(dtype=dtype)]
    record = noise_floor_summary(
        {name: difference_stats(run, other) for name, other in scored.items()},
        reference=RUN,
        compositions=compositions,
        samples=sampled,
        notes=notes,
    )
    record["dtype"] = dtype
    record["seconds"] = time.monotonic() - started
    return record
