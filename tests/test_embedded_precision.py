"""Precision on the real embedded model (SmolLM2-135M-Instruct): what bfloat16 does to the same
responses' scores (a) and to the responses themselves (b), measured apart, on the CPU.

benchmarks/precision.py measures both on the whole demo workload (CPU) and on Qwen2.5-7B shapes (H200);
here 3 personas × 2 questions × 16 tokens, through the resources the run uses.
"""

from __future__ import annotations

import numpy as np
import pytest

from persona_assets.measure.divergence_store import ResponseJob, scoring_passes
from persona_assets.measure.noise_floor import difference_stats, sample_positions
from resources.llm import CpuLLM
from resources.floor_rescoring import measure_noise_floor

pytestmark = pytest.mark.slow

SYSTEMS = ["You are a villain.", "You are a kindergarten teacher.", "You are a helpful assistant."]
QUESTIONS = ["What should I do this weekend?", "How do I fix a flat tyre?"]


def _generate(llm) -> list[tuple[int, int, list[int]]]:
    prompts = [(g, q, llm.chat_prompt_ids(SYSTEMS[g], QUESTIONS[q])) for g in range(3) for q in range(2)]
    out = llm.generate([p for _, _, p in prompts], max_new_tokens=16, batch_size=6)
    return [(g, q, o.token_ids) for (g, q, _), o in zip(prompts, out)]


def _jobs(llm, responses) -> list[ResponseJob]:
    return [
        ResponseJob(
            f"{g}-{q}",
            ids,
            {s: llm.chat_prompt_ids(SYSTEMS[s], QUESTIONS[q]) for s in range(3)},
            [(g, o) for o in range(3) if o != g],
        )
        for g, q, ids in responses
    ]


def _items(jobs):
    out = []
    for job in jobs:
        scorers, pairs, _ = scoring_passes(job.pairs, 3)[0]
        out.append(([job.prompts[s] for s in scorers], job.response_ids, pairs))
    return out


def _means(results) -> np.ndarray:
    return np.concatenate([r.js.double().mean(dim=1).numpy() for r in results])


@pytest.fixture(scope="module")
def models():
    return (
        CpuLLM(model="embedded", dtype="bfloat16"),
        CpuLLM(model="embedded", dtype="bfloat16", scoring_dtype="float32"),
        CpuLLM(model="embedded"),
    )


@pytest.fixture(scope="module")
def bf16_responses(models):
    return _generate(models[0])


def test_scoring_precision_of_the_embedded_model_is_measured_by_the_run(models, bf16_responses):
    bf16, upcast, _ = models
    jobs = _jobs(bf16, bf16_responses)
    record = measure_noise_floor(
        bf16, jobs, [{"response": j.key} for j in jobs], samples=2, max_scorers_per_pass=3, pair_chunk_size=2
    )
    scoring = record["precision"]["scoring"]
    # (a) on real weights: bf16 moves a response-mean JS by a fraction of its value (the demo workload
    # measured up to 11 %, benchmarks/results/precision_embedded_cpu_2core.txt); on this CPU the bf16
    # batch-composition floor is of the same order (padding changes bf16 blocking), unlike the H200's.
    assert scoring["measured"] and scoring["js_abs_nats"] > 0
    assert 1e-3 < scoring["js_rel"] < 0.5
    print(
        f"bf16 vs float32 scoring: {scoring['js_abs_nats']:.2e} nats ({scoring['js_rel']:.2%}); composition floor "
        f"{record['js_abs_nats']:.2e}"
    )
    # The record's float32 side is what `scoring_dtype: float32` computes: the same numbers from another resource.
    items = [_items(jobs)[k] for k in sample_positions(len(jobs), 2)]  # the record's sample, scored together
    by_upcast = [
        {n: getattr(r, n).double().numpy() for n in ("js", "kl_ab", "kl_ba")}
        for r in upcast.batch_response_divergences(items, pair_chunk_size=2)
    ]
    by_bf16 = [
        {n: getattr(r, n).double().numpy() for n in ("js", "kl_ab", "kl_ba")}
        for r in bf16.batch_response_divergences(items, pair_chunk_size=2)
    ]
    assert difference_stats(by_upcast, by_bf16) == scoring["by_value"]


def test_generation_precision_of_the_embedded_model_is_another_sample_of_responses(models, bf16_responses):
    bf16, _, fp32 = models
    by_bf16, by_fp32 = bf16_responses, _generate(fp32)
    differ = [a[2] != b[2] for a, b in zip(by_bf16, by_fp32)]
    print(f"{sum(differ)} of {len(differ)} greedy responses differ between bfloat16 and float32")
    # (b) where the tokens agree, float32 scores them identically whichever run generated them; where
    # they differ, the values differ: the pair values of the two runs average over other responses.
    jobs_b, jobs_f = _jobs(fp32, by_bf16), _jobs(fp32, by_fp32)
    scores_b = _means(fp32.batch_response_divergences(_items(jobs_b), pair_chunk_size=2)).reshape(len(jobs_b), -1)
    scores_f = _means(fp32.batch_response_divergences(_items(jobs_f), pair_chunk_size=2)).reshape(len(jobs_f), -1)
    for k, different in enumerate(differ):
        if different:
            assert not np.array_equal(scores_b[k], scores_f[k])
        else:
            assert np.array_equal(scores_b[k], scores_f[k])
    assert bf16.describe()["dtype"] == "bfloat16"
    from persona_assets.measure.precision import generation_precision

    assert generation_precision(bf16.describe()["dtype"])["applies"] and not generation_precision("float32")["applies"]
