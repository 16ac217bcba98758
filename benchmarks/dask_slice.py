"""The N = 111 slice of benchmarks/gpu_scale.py as a Dagster job, for benchmarks/dask_scale.py.

    plan_slice ──► score_slice_shard[shard_k] (k = 0 … shards−1, tag device=gpu_shard + Dask GPU=1) ──► collect_slice

Each shard step runs what a `score_divergence_shard` step runs (`score_missing` over
`shard_of(..., k, K)`, the packed bf16 engine) on the random-weight Qwen2.5-7B shapes, on GPU
k mod the visible GPUs (CPU with `tiny`), into one shared cache directory; it returns its own
timings so the driver can split each step's time into Dagster/Dask overhead and the work.
The job uses the project's executor (persona_assets.executor), so `execution:` picks in_process
or dask exactly as for the study.
"""

import tempfile
import time
from pathlib import Path

import dagster as dg
from pydantic import Field

from persona_assets.executor import SHARD_STEP_TAG, persona_executor


class SliceConfig(dg.Config):
    cache_dir: str = Field(description="divergence cache shared by the shards (absolute)")
    shards: int = 1
    tiny: bool = False
    personas: int = 111
    sources: int = 8
    questions: int = 4
    response_len: int = 512
    len_jitter: int = 64
    system_min: int = 20
    system_max: int = 70
    max_scorers: int = 12
    responses_per_batch: int = 16
    max_batch_tokens: int = 16384


@dg.op(out=dg.DynamicOut(int))
def plan_slice(config: SliceConfig):
    for shard in range(config.shards):
        yield dg.DynamicOutput(shard, mapping_key=f"shard_{shard}")


@dg.op(tags=SHARD_STEP_TAG)
def score_slice_shard(config: SliceConfig, shard: int) -> dict:
    import argparse

    import torch

    from benchmarks.gpu_scale import EngineScorer, _flops, build_model, make_jobs
    from persona_assets.measure.divergence_store import DivergenceCache, score_missing, shard_of
    from resources.hf_engine import HFEngine

    entered = time.time()
    args = argparse.Namespace(**config.model_dump())
    device = "cpu" if config.tiny or not torch.cuda.is_available() else f"cuda:{shard % torch.cuda.device_count()}"
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    with torch.inference_mode():
        model, model_config = build_model(config.tiny, device)
        engine = HFEngine.__new__(HFEngine)
        engine.model, engine.tokenizer, engine.source, engine.device = model, None, None, device
        engine.dtype, engine.pad_id, engine.stop_ids = (
            str(next(model.parameters()).dtype),
            0,
            {model_config.vocab_size - 1},
        )
        scorer = EngineScorer(engine, config.max_batch_tokens)
        jobs = make_jobs(args, model_config.vocab_size)
        mine = shard_of(jobs, [len(j.response_ids) for j in jobs], shard, config.shards)
        with tempfile.TemporaryDirectory() as warm_dir:  # kernels and cuBLAS warm, as in gpu_scale.py
            warm = [
                type(mine[0])(
                    mine[0].key, mine[0].response_ids, mine[0].prompts, mine[0].pairs[: config.max_scorers - 1]
                )
            ]
            score_missing(
                scorer,
                warm,
                DivergenceCache(Path(warm_dir)),
                max_scorers_per_pass=config.max_scorers,
                responses_per_batch=config.responses_per_batch,
            )
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.time()
        stats = score_missing(
            scorer,
            mine,
            DivergenceCache(Path(config.cache_dir)),
            max_scorers_per_pass=config.max_scorers,
            responses_per_batch=config.responses_per_batch,
        )
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        end = time.time()
    return {
        "shard": shard,
        "device": device,
        "entered": entered,
        "start": start,
        "end": end,
        "responses": stats.responses_computed,
        "sequences": stats.teacher_forced_sequences,
        "scored_tokens": stats.teacher_forced_tokens,
        "flops": _flops(model_config, mine, config.max_scorers),
    }


@dg.op
def collect_slice(shards: list[dict]) -> dict:
    return {"shards": sorted(shards, key=lambda s: s["shard"])}


@dg.job(executor_def=persona_executor())
def slice_job():
    collect_slice(plan_slice().map(score_slice_shard).collect())
