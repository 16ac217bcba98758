"""Re-scoring a sample of responses in the engine's batch compositions, outside Dagster."""

from __future__ import annotations

import math

import pytest
import torch

from persona_assets.measure.divergence_store import ResponseJob, scoring_passes
from persona_assets.measure.noise_floor import difference_stats
from resources.gpu_llm import GpuLLM
from resources.llm import CpuLLM
from resources.floor_rescoring import measure_noise_floor

SYSTEM_PROMPTS = ["You are a pirate.", "You are a lawyer.", "You are terse.", "You are kind.", "You are a poet."]


def pair_own_jobs(llm, n_responses: int) -> list[ResponseJob]:
    jobs = []
    for r in range(n_responses):
        generator = r % len(SYSTEM_PROMPTS)
        prompts = {k: llm.chat_prompt_ids(p, f"Question {r}?") for k, p in enumerate(SYSTEM_PROMPTS)}
        pairs = [(generator, k) for k in range(len(SYSTEM_PROMPTS)) if k != generator]
        jobs.append(ResponseJob(f"key{r}", [100 + r, 200, 300 + r, 17, 2], prompts, pairs))
    return jobs


def describe(jobs):
    return [{"response": job.key} for job in jobs]


def _values(results) -> list[dict]:
    return [{name: getattr(r, name).double().numpy() for name in ("js", "kl_ab", "kl_ba")} for r in results]


def test_cpu_bfloat16_floor_uses_the_first_pass_and_measures_float32_scoring(tiny_model_dir):
    llm = CpuLLM(model=str(tiny_model_dir), dtype="bfloat16")
    jobs = pair_own_jobs(llm, 5)
    model = llm.engine.model
    weights = {k: v.clone() for k, v in [*model.named_parameters(), *model.named_buffers()]}  # inv_freq is a buffer
    record = measure_noise_floor(llm, jobs, describe(jobs), samples=2, max_scorers_per_pass=3, pair_chunk_size=2)
    assert record["measured"] and set(record["compositions"]) == {"run", "alone"}
    assert [s["response"] for s in record["samples"]] == ["key0", "key4"]  # first and last
    assert all(s["n_scorers"] == 3 and s["n_pairs"] == 2 and s["n_tokens"] == 5 for s in record["samples"])
    assert math.isfinite(record["js_abs_nats"]) and record["js_abs_nats"] >= 0
    scoring = record["precision"]["scoring"]
    assert scoring["measured"] and scoring["run_dtype"] == "bfloat16" and scoring["js_abs_nats"] > 0
    assert record["precision"]["generation"]["applies"] and not record["precision"]["generation"]["measured"]
    # Weights and buffers are back as loaded, bit for bit and dtype for dtype, after the float32 re-scoring.
    after = dict([*model.named_parameters(), *model.named_buffers()])
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in weights.items())
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}

    # Cross-check: the same sample scored by two resources (bf16, and bf16 weights scored in float32
    # through the scoring_dtype setting) gives exactly the record's differences.
    sample = []
    for position in (0, 4):  # the record's sample, each response's first scoring pass
        scorers, local_pairs, _ = scoring_passes(jobs[position].pairs, 3)[0]
        sample.append(([jobs[position].prompts[k] for k in scorers], jobs[position].response_ids, local_pairs))
    upcast = CpuLLM(model=str(tiny_model_dir), dtype="bfloat16", scoring_dtype="float32")
    by_fp32 = _values(upcast.batch_response_divergences(sample, pair_chunk_size=2))
    by_bf16 = _values(llm.batch_response_divergences(sample, pair_chunk_size=2))
    assert upcast.describe()["scoring_dtype"] == "float32" and upcast.engine.dtype == "float32"
    assert difference_stats(by_fp32, by_bf16) == scoring["by_value"]
    # Generation after scoring runs in the loaded dtype again.
    assert upcast.model_engine().dtype == "bfloat16"
    assert all(p.dtype == torch.bfloat16 for p in upcast.engine.model.parameters())

    off = measure_noise_floor(llm, jobs, describe(jobs), samples=0, max_scorers_per_pass=3, pair_chunk_size=2)
    assert off["measured"] is False and off["js_abs_nats"] is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_floor_compares_packed_with_own_batch_and_alone(tiny_model_dir):
    llm = GpuLLM(model=str(tiny_model_dir), dtype="bfloat16", use_vllm=False)
    jobs = pair_own_jobs(llm, 6)
    record = measure_noise_floor(llm, jobs, describe(jobs), samples=3, max_scorers_per_pass=5, pair_chunk_size=4)
    assert set(record["compositions"]) == {"run", "alone", "own_batch"}
    assert set(record["by_composition"]) == {"alone", "own_batch"}
    # bf16 forward: 8 bits of mantissa, a relative error of ~4e-3 per rounding; the response-mean
    # JS moves by far less than that on average (docs/gpu.md: 6.1e-5 relative on a 1.7B model).
    assert math.isfinite(record["js_abs_nats"]) and record["js_rel"] < 5e-2
    print({k: record[k] for k in ("js_abs_nats", "js_rel", "js_per_token_abs_nats", "kl_abs_nats", "seconds")})
