"""Teacher-forced divergences: per-response results in a content-addressed cache, then N×N matrices.

With one shard (the default) `divergence_matrices` scores whatever the cache lacks and aggregates.
With K shards (`build_divergence_assets(K)`, `PERSONA_GPU_SHARDS=K`), K `divergence_shard_<k>`
steps run side by side, one per GPU (`cuda_device` = k), each filling the cache for its share of
the responses; `divergence_matrices` then finds everything cached (it scores any remainder itself,
so the matrices never depend on the shards' settings) and aggregates exactly as a one-GPU run.
"""

import time

import dagster as dg
import numpy as np
import pandas as pd

from persona_assets.config import DivergenceConfig
from persona_assets.core.aggregate import AVERAGING_MODES, pair_matrices, pair_question_table
from persona_assets.core.divergence_store import (
    DIVERGENCE_CODE_VERSION,
    DivergenceCache,
    ResponseJob,
    ScoreStats,
    cached_rows,
    response_key,
    score_missing,
    shard_of,
)
from persona_assets.core.eval_set import EvalSet
from persona_assets.core.progress import ProgressReporter
from persona_assets.storage import data_dir, outputs_dir, write_csv
from resources.llm import LLMResource
from resources.noise_floor_scoring import measure_noise_floor


def scorer_pairs(generator: int, n_personas: int, averaging: str) -> list[tuple[int, int]]:
    """Which persona pairs a response needs: (generator, other) for pair-own, all pairs otherwise."""
    if averaging == "pair_own":
        return [(generator, other) for other in range(n_personas) if other != generator]
    return [(a, b) for a in range(n_personas) for b in range(a + 1, n_personas)]


def divergence_cache() -> DivergenceCache:
    return DivergenceCache(data_dir() / "cache" / "divergences")


def response_jobs(llm: LLMResource, eval_set: dict, generations: dict, averaging: str) -> list[ResponseJob]:
    """One job per response: its cache key, its scorers' prompts and the pairs the averaging needs."""
    if averaging not in AVERAGING_MODES:
        raise dg.Failure(f"averaging must be one of {AVERAGING_MODES}, got {averaging!r}")
    evals = EvalSet.from_dict(eval_set)
    names = evals.persona_names
    if generations["persona_names"] != names:
        raise dg.Failure("generations were made for other personas than the eval set: re-materialize generations")
    model = llm.describe()
    prompts = {
        (k, q): llm.chat_prompt_ids(p.prompt, question)
        for k, p in enumerate(evals.personas)
        for q, question in enumerate(evals.questions)
    }
    jobs = []
    for r in generations["responses"]:
        g, q = names.index(r["persona"]), r["question_index"]
        key = response_key(
            model_fingerprint=model["model_fingerprint"],
            dtype=model["dtype"],
            device_kind=model["device"].split(":")[0],
            generation_key=r.get("cache_key", ""),
            response_ids=r["token_ids"],
            generator_prompt_ids=prompts[(g, q)],
        )
        pairs = scorer_pairs(g, len(names), averaging)
        used = sorted({s for pair in pairs for s in pair})
        jobs.append(
            ResponseJob(
                key, list(r["token_ids"]), {s: prompts[(s, q)] for s in used}, pairs,
                names={s: names[s] for s in {g, *used}}, generator=g, question_index=q,
            )
        )
    return jobs


def _score(context, llm: LLMResource, jobs: list[ResponseJob], config: DivergenceConfig) -> tuple[ScoreStats, float]:
    progress = ProgressReporter("teacher forcing", context.log.info, unit="responses")
    started = time.monotonic()
    stats = score_missing(
        llm,
        jobs,
        divergence_cache(),
        max_scorers_per_pass=config.max_scorers_per_pass,
        responses_per_batch=config.responses_per_batch,
        pair_chunk_size=config.pair_chunk_size,
        log=context.log.info,
        warn=context.log.warning,
        progress=progress,
        prepare=llm.load_for_teacher_forcing,
    )
    return stats, time.monotonic() - started


def _stats_metadata(stats: ScoreStats, elapsed: float) -> dict:
    return {
        "responses": stats.responses,
        "responses_scored_now": stats.responses_computed,
        "responses_complete_in_cache": stats.responses_complete_in_cache,
        "pairs_scored_now": stats.pairs_computed,
        "pairs_from_cache": stats.pairs_from_cache,
        "teacher_forced_sequences": stats.teacher_forced_sequences,
        "teacher_forced_tokens": stats.teacher_forced_tokens,
        "tokens_per_second": stats.teacher_forced_tokens / stats.seconds if stats.seconds > 0 and stats.teacher_forced_tokens else None,
        "seconds": stats.seconds,
        "seconds_with_model_load": elapsed,
    }


def _matrices(context: dg.AssetExecutionContext, config: DivergenceConfig, llm: LLMResource, eval_set: dict, generations: dict) -> dict:
    """Teacher-forced Jensen-Shannon and KL divergences between every pair of personas.

    Each response is scored under the personas its pairs need (pair-own: the generator and each
    other persona), at most `max_scorers_per_pass` sequences per pass; per token JS and both KLs,
    averaged over the response's tokens, then over responses and questions as the `averaging`
    setting says. Per-response results live in a content-addressed cache
    (cache/divergences/), so adding personas or questions scores only what is new and a killed run
    resumes where it stopped. Matrices: JS (symmetric), KL[i][j] = KL(P_i‖P_j), KL_sym, |KL − KLᵀ|
    and the signed KL − KLᵀ, in nats. The per-(pair, question, response) table is written to
    outputs/divergence_per_response.csv. `noise_floor`: a few responses (`noise_floor_samples`)
    re-scored alone and in the other batch compositions; the largest change of a response-mean JS
    is the floor below which pair differences are not findings.
    """
    jobs = response_jobs(llm, eval_set, generations, config.averaging)
    stats, elapsed = _score(context, llm, jobs, config)
    names = generations["persona_names"]
    responses = generations["responses"]
    values = cached_rows(jobs, divergence_cache())
    rows = []
    for response, job, found in zip(responses, jobs, values):
        if found is None:
            raise dg.Failure(f"divergences of response {job.key[:12]} missing from the cache after scoring")
        for (a, b), value in zip(job.pairs, found):
            rows.append(
                {
                    "generator": response["persona"],
                    "question_index": response["question_index"],
                    "persona_a": names[a],
                    "persona_b": names[b],
                    "js": value["js"],
                    "kl_ab": value["kl_ab"],
                    "kl_ba": value["kl_ba"],
                    "n_tokens": response["n_tokens"],
                }
            )

    per_response = pd.DataFrame(rows)
    matrices = pair_matrices(per_response, names, config.averaging)
    table = pair_question_table(per_response, names, config.averaging)
    write_csv(outputs_dir() / "divergence_per_response.csv", per_response)
    write_csv(outputs_dir() / "divergence_per_pair_question.csv", table)

    # Measured every run, even when everything came from the cache: a few forwards.
    noise_floor = measure_noise_floor(
        llm,
        jobs,
        [{"generator": r["persona"], "question_index": r["question_index"]} for r in responses],
        samples=config.noise_floor_samples,
        max_scorers_per_pass=config.max_scorers_per_pass,
        pair_chunk_size=config.pair_chunk_size,
    )
    # A duration is not a result: it goes to the metadata, so the output file reproduces byte for byte.
    noise_floor_seconds = noise_floor.pop("seconds", None)
    upper = matrices.js[np.triu_indices(len(names), k=1)]
    context.add_output_metadata(
        {
            "averaging": config.averaging,
            "js_mean": float(upper.mean()),
            "js_min": float(upper.min()),
            "js_max": float(upper.max()),
            "noise_floor_js_nats": noise_floor["js_abs_nats"],
            "noise_floor_js_rel": noise_floor.get("js_rel"),
            "noise_floor": dg.MetadataValue.json(noise_floor),
            "noise_floor_seconds": noise_floor_seconds,
            **_stats_metadata(stats, elapsed),
        }
    )
    return {
        "model": llm.describe(),
        "method": {
            "averaging": config.averaging,
            "log_softmax_dtype": "float32",
            "divergence_dtype": "float64",
            "units": "nats",
            "token_mean": "mean over response positions (end-of-turn token included when emitted)",
            "kl_matrix": "[i][j] = KL(P_i || P_j)",
            "kl_signed_asym_matrix": "[i][j] = KL(i->j) - KL(j->i)",
            "max_scorers_per_pass": config.max_scorers_per_pass,
            "divergence_code_version": DIVERGENCE_CODE_VERSION,
            "exact": "exact JS and KL over the full vocabulary (no approximation)",
        },
        "generation_settings": generations["settings"],
        "n_questions": len(EvalSet.from_dict(eval_set).questions),
        **matrices.to_dict(),
        "per_pair_question": table.to_dict(orient="records"),
        "response_token_counts": [
            {"persona": r["persona"], "question_index": r["question_index"], "n_tokens": r["n_tokens"]} for r in responses
        ],
        "per_response_csv": str(outputs_dir() / "divergence_per_response.csv"),
        "noise_floor": noise_floor,
    }


def _matrices_asset(shard_keys: list[dg.AssetKey]) -> dg.AssetsDefinition:
    @dg.asset(
        name="divergence_matrices",
        group_name="model",
        kinds={"torch"},
        code_version="3",
        op_tags={"device": "gpu"},
        deps=shard_keys,
        description=_matrices.__doc__,
    )
    def divergence_matrices(
        context: dg.AssetExecutionContext,
        config: DivergenceConfig,
        llm: LLMResource,
        eval_set: dict,
        generations: dict,
    ) -> dict:
        return _matrices(context, config, llm, eval_set, generations)

    return divergence_matrices


def shard_key(shard: int) -> dg.AssetKey:
    return dg.AssetKey(f"divergence_shard_{shard}")


def _shard_asset(shard: int, n_shards: int) -> dg.AssetsDefinition:
    @dg.asset(
        name=shard_key(shard).path[0],
        group_name="model",
        kinds={"torch"},
        code_version="1",
        op_tags={
            "device": "gpu_shard",
            "cuda_device": str(shard),
            # Read only by cluster executors (docs/cluster.md): one GPU per pod / the Celery gpu queue.
            "dagster-k8s/config": {"container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}},
            "dagster-celery/queue": "gpu",
        },
        description=(
            f"Shard {shard} of {n_shards} of the teacher forcing: scores its share of the responses (round-robin by "
            f"length) on GPU {shard} and writes them to the divergence cache; returns counts only."
        ),
    )
    def shard_asset(
        context: dg.AssetExecutionContext, config: DivergenceConfig, llm: LLMResource, eval_set: dict, generations: dict
    ) -> dict:
        llm.use_shard_device(shard)
        jobs = response_jobs(llm, eval_set, generations, config.averaging)
        lengths = [len(job.response_ids) for job in jobs]
        mine = shard_of(jobs, lengths, shard, n_shards)
        stats, elapsed = _score(context, llm, mine, config)
        metadata = _stats_metadata(stats, elapsed)
        context.add_output_metadata({"shard": shard, "n_shards": n_shards, "device": llm.describe()["device"], **metadata})
        return {"shard": shard, "n_shards": n_shards, "device": llm.describe()["device"], **metadata}

    return shard_asset


def build_divergence_assets(n_shards: int = 1) -> list[dg.AssetsDefinition]:
    """`divergence_matrices`, preceded by `n_shards` shard steps when n_shards > 1."""
    if n_shards < 1:
        raise ValueError(f"n_shards must be ≥ 1, got {n_shards}")
    if n_shards == 1:
        return [_matrices_asset([])]
    shards = [_shard_asset(k, n_shards) for k in range(n_shards)]
    return [*shards, _matrices_asset([shard_key(k) for k in range(n_shards)])]


divergence_matrices = build_divergence_assets(1)[0]
