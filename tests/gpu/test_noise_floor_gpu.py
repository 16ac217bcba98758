"""The noise-floor measurement on CUDA (resources/floor_rescoring.py): the sampled responses
re-scored packed (the run's composition), each in a call of its own, and every sequence alone,
on a random-weight Qwen2 in bfloat16 (what the GPU run uses) and float32."""

from __future__ import annotations

import math

import pytest
import torch

from persona_assets.measure.divergence_store import ResponseJob
from resources.floor_rescoring import measure_noise_floor
from tests.gpu import ON_GPU
from tests.gpu.token_engine import PackedScorer, random_ids

pytestmark = ON_GPU
N_SCORERS = 5


def _jobs(vocab: int, n: int = 6) -> list[ResponseJob]:
    gen = torch.Generator().manual_seed(13)
    jobs = []
    for r in range(n):
        prompts = {s: random_ids(gen, 20 + 3 * s, vocab) for s in range(N_SCORERS)}
        generator = r % N_SCORERS
        pairs = [(generator, k) for k in range(N_SCORERS) if k != generator]
        jobs.append(ResponseJob(f"key{r}", random_ids(gen, 24 + 9 * r, vocab), prompts, pairs))
    return jobs


def _floor(engine) -> dict:
    jobs = _jobs(engine.vocab_size)
    record = measure_noise_floor(
        PackedScorer(engine),
        jobs,
        [{"response": j.key} for j in jobs],
        samples=3,
        max_scorers_per_pass=N_SCORERS,
        pair_chunk_size=4,
    )
    print(
        f"{engine.dtype}: "
        + ", ".join(f"{k} {record[k]:.2e}" for k in ("js_abs_nats", "js_rel", "js_per_token_abs_nats", "kl_abs_nats"))
    )
    for name, stats in record["by_composition"].items():
        print(
            f"  {name} vs run: JS per token max {stats['js']['per_token_abs_max']:.2e}, response mean max "
            f"{stats['js']['per_response_abs_max']:.2e}"
        )
    return record


@pytest.fixture(scope="module")
def floors(engines):
    return {dtype: _floor(engines(dtype)) for dtype in ("bfloat16", "float32")}


def test_gpu_floor_compares_packed_with_own_batch_and_alone(floors):
    record = floors["bfloat16"]
    assert record["measured"] and record["reference_composition"] == "run"
    assert set(record["compositions"]) == {"run", "alone", "own_batch"}
    assert set(record["by_composition"]) == {"alone", "own_batch"}
    assert [s["response"] for s in record["samples"]] == ["key0", "key2", "key5"]  # spread over the jobs
    assert all(s["n_scorers"] == N_SCORERS and s["n_pairs"] == N_SCORERS - 1 for s in record["samples"])
    # Measured, finite and far below the values themselves. On an H200 the packed bf16 path gave
    # exactly 0 here (its kernels do not depend on the batch composition for these shapes), which is
    # why the floor cannot stand for the precision effect (bf16 vs float32): that is measured apart.
    assert math.isfinite(record["js_abs_nats"]) and record["js_per_token_abs_nats"] >= 0
    assert record["js_rel"] < 5e-2


def test_float32_floor_is_tiny_and_the_bfloat16_run_measures_its_scoring_precision(floors, engines):
    bf16, fp32 = floors["bfloat16"], floors["float32"]
    assert fp32["precision"]["scoring"]["applies"] is False  # float32 is the reference
    assert math.isfinite(fp32["js_abs_nats"]) and fp32["js_rel"] < 1e-4
    assert fp32["js_per_token_abs_nats"] < 1e-5
    scoring = bf16["precision"]["scoring"]
    print(f"bf16 vs float32 scoring: JS {scoring['js_abs_nats']:.2e} nats, {scoring['js_rel']:.2e} relative")
    # bf16 rounding moves the values well beyond the (zero) composition floor, and the weights come
    # back to bfloat16 bit for bit after the float32 re-scoring.
    assert scoring["measured"] and scoring["js_abs_nats"] > bf16["js_abs_nats"] and 0 < scoring["js_rel"] < 0.5
    assert bf16["precision"]["generation"]["applies"] and not bf16["precision"]["generation"]["measured"]
    assert engines("bfloat16").dtype == "bfloat16"
    assert all(p.dtype == torch.bfloat16 for p in engines("bfloat16").model.parameters())
