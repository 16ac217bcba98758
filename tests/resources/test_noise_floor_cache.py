"""The noise floor's cache key changes with every input the floor depends on, and only then."""

from __future__ import annotations

import dataclasses

from resources.llm import CpuLLM
from resources.noise_floor_cache import noise_floor_key
from resources.floor_rescoring import noise_floor_sample
from tests.resources.test_floor_rescoring import describe, pair_own_jobs


def _key(llm, jobs, *, samples=2, max_scorers_per_pass=3, pair_chunk_size=2):
    from persona_assets.measure.noise_floor import sample_positions

    items, sampled = noise_floor_sample(
        jobs, describe(jobs), samples=samples, max_scorers_per_pass=max_scorers_per_pass
    )
    chosen = [jobs[p] for p in sample_positions(len(jobs), samples)]
    return noise_floor_key(llm, items, sampled, chosen, pair_chunk_size=pair_chunk_size)


def test_key_follows_every_input_of_the_floor(tiny_model_dir):
    llm = CpuLLM(model=str(tiny_model_dir))
    jobs = pair_own_jobs(llm, 4)
    base = _key(llm, jobs)
    assert _key(CpuLLM(model=str(tiny_model_dir)), pair_own_jobs(llm, 4)) == base  # same inputs, same key
    other_response = [dataclasses.replace(jobs[0], response_ids=[*jobs[0].response_ids, 5]), *jobs[1:]]
    other_prompt = [dataclasses.replace(jobs[0], prompts={**jobs[0].prompts, 1: [1, 2, 3]}), *jobs[1:]]
    other_key = [dataclasses.replace(jobs[0], key="another"), *jobs[1:]]
    changed = {
        "response tokens": _key(llm, other_response),
        "a scorer's prompt": _key(llm, other_prompt),
        "the response's cache key": _key(llm, other_key),
        "samples": _key(llm, jobs, samples=3),
        "max_scorers_per_pass": _key(llm, jobs, max_scorers_per_pass=2),
        "pair_chunk_size": _key(llm, jobs, pair_chunk_size=1),
        "dtype": _key(CpuLLM(model=str(tiny_model_dir), dtype="bfloat16"), jobs),
        "scoring dtype": _key(CpuLLM(model=str(tiny_model_dir), dtype="bfloat16", scoring_dtype="float32"), jobs),
        "shared prefixes": _key(CpuLLM(model=str(tiny_model_dir), shared_prefixes=False), jobs),
    }
    assert all(value != base for value in changed.values()), [k for k, v in changed.items() if v == base]
    assert len(set(changed.values())) == len(changed)
