"""Teacher-forced divergences: one graph asset that fans out over teacher-forcing shards.

    plan_teacher_forcing ──► score_divergence_shard[shard_k] (k = 0 … shards−1) ──► aggregate_divergences
                                                                                        │
             divergence_matrices ◄─────── divergence_per_response ◄──── divergence_per_pair_question

`shards` is run config (`ops.divergence_matrices.config.shards`), so the asset keys are the same
on every machine. Each shard scores its share of the responses (round-robin by length) into the
content-addressed divergence cache; shard 0 also measures the noise floor. `aggregate_divergences`
reads every response's values from the cache (scoring any remainder itself, so the matrices never
depend on the shards' settings) and produces the N×N matrices and the two tables, each an asset.
In one process (the default executor) the shards run one after another on the one loaded model;
under the multiprocess executor they run side by side, shard k on GPU (cuda_device + k).
"""

import time
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from persona_assets.config import DivergenceConfig
from persona_assets.measure.aggregate import pair_matrices, pair_question_table, per_response_table
from persona_assets.measure.divergence_store import (
    DIVERGENCE_CODE_VERSION,
    DivergenceCache,
    ResponseJob,
    ScoreStats,
    cached_rows,
    score_missing,
    shard_of,
)
from persona_assets.runs.errors import InputError
from persona_assets.inputs.eval_set import EvalSet
from persona_assets.measure.method_record import method_record
from persona_assets.runs.progress import Heartbeat, ProgressReporter
from persona_assets.measure.response_jobs import not_round_tripping, response_jobs
from persona_assets.measure.scoring_rule import GENERATED
from persona_assets.executor import MODEL_STEP_TAG, SHARD_STEP_TAG
from persona_assets.ui_metadata import matrix_table, rounded
from resources.llm import LLMResource
from resources.noise_floor_cache import noise_floor_once, scoring_switches
from resources.results import ResultsStore

CODE_VERSION = "5"


def _jobs(llm: LLMResource, eval_set: dict, generations: dict, config: DivergenceConfig) -> list[ResponseJob]:
    try:
        return response_jobs(llm, eval_set, generations, config.averaging, config.scoring_rule)
    except InputError as exc:
        raise dg.Failure(str(exc)) from None


def _score(
    context, llm: LLMResource, results: ResultsStore, jobs: list[ResponseJob], config: DivergenceConfig, label: str
) -> ScoreStats:
    with Heartbeat(label, context.log.info):
        return _score_missing(context, llm, results, jobs, config, label)


def _score_missing(
    context, llm: LLMResource, results: ResultsStore, jobs: list[ResponseJob], config: DivergenceConfig, label: str
) -> ScoreStats:
    return score_missing(
        llm,
        jobs,
        DivergenceCache(results.cache_path("divergences")),
        max_scorers_per_pass=config.max_scorers_per_pass,
        responses_per_batch=config.responses_per_batch,
        pair_chunk_size=config.pair_chunk_size,
        log=context.log.info,
        warn=context.log.warning,
        progress=ProgressReporter(label, context.log.info, unit="responses"),
        prepare=llm.load_for_teacher_forcing,
    )


def _stats_metadata(stats: ScoreStats, elapsed: float) -> dict[str, Any]:
    return {
        "responses": stats.responses,
        "responses_scored_now": stats.responses_computed,
        "responses_complete_in_cache": stats.responses_complete_in_cache,
        "pairs_scored_now": stats.pairs_computed,
        "pairs_from_cache": stats.pairs_from_cache,
        "teacher_forced_sequences": stats.teacher_forced_sequences,
        "teacher_forced_tokens": stats.teacher_forced_tokens,
        "tokens_per_second": stats.teacher_forced_tokens / stats.seconds
        if stats.seconds > 0 and stats.teacher_forced_tokens
        else None,
        "seconds": stats.seconds,
        "seconds_with_model_load": elapsed,
    }


@dg.op(out=dg.DynamicOut(int), description="One dynamic output per teacher-forcing shard (`shards` in the run config).")
def plan_teacher_forcing(context: dg.OpExecutionContext, config: DivergenceConfig, generations: dict):
    # Takes the generations only so that it runs after them: nothing of this asset starts earlier.
    if config.shards > 1:
        context.log.info(
            f"teacher forcing in {config.shards} shards (side by side only under the multiprocess executor)"
        )
    for shard in range(config.shards):
        yield dg.DynamicOutput(shard, mapping_key=f"shard_{shard}")


@dg.op(
    tags=SHARD_STEP_TAG,
    description="Scores one shard's responses into the divergence cache; shard 0 also measures the noise floor.",
)
def score_divergence_shard(
    context: dg.OpExecutionContext,
    config: DivergenceConfig,
    llm: LLMResource,
    results: ResultsStore,
    eval_set: dict,
    generations: dict,
    shard: int,
) -> dict:
    started = time.monotonic()
    llm.use_shard_device(shard)
    jobs = _jobs(llm, eval_set, generations, config)
    mine = shard_of(jobs, [len(job.response_ids) for job in jobs], shard, config.shards)
    label = "teacher forcing" if config.shards == 1 else f"teacher forcing shard {shard}/{config.shards}"
    stats = _score(context, llm, results, mine, config, label)
    noise_floor, noise_floor_from_cache = None, False
    if shard == 0:
        # Measured once per set of inputs (model, settings, sampled responses); read back otherwise.
        with Heartbeat("noise floor", context.log.info):
            noise_floor, noise_floor_from_cache = noise_floor_once(
                llm,
                jobs,
                [{"generator": r["persona"], "question_index": r["question_index"]} for r in generations["responses"]],
                results.cache_path("noise_floor"),
                samples=config.noise_floor_samples,
                max_scorers_per_pass=config.max_scorers_per_pass,
                pair_chunk_size=config.pair_chunk_size,
                log=context.log.info,
            )
    metadata = {
        "shard": shard,
        "n_shards": config.shards,
        "device": llm.describe()["device"],
        "teacher_forcing_switches": scoring_switches(llm),
        **_stats_metadata(stats, time.monotonic() - started),
    }
    context.log.info(
        f"shard {shard}: {metadata['responses_scored_now']} responses scored, "
        f"{metadata['responses_complete_in_cache']} from the cache"
    )
    return {**metadata, "noise_floor": noise_floor, "noise_floor_from_cache": noise_floor_from_cache}


def _run_totals(shard_results: list[dict], remainder: ScoreStats) -> dict[str, Any]:
    """What this run scored: the shards' work, plus whatever the aggregate step had to score itself."""
    total = lambda key: sum(s[key] for s in shard_results)  # noqa: E731
    return {
        "responses_scored_now": total("responses_scored_now") + remainder.responses_computed,
        "responses_complete_in_cache": total("responses_complete_in_cache"),
        "pairs_scored_now": total("pairs_scored_now") + remainder.pairs_computed,
        "pairs_from_cache": total("pairs_from_cache"),
        "remainder_responses_scored": remainder.responses_computed,
        "teacher_forced_sequences": total("teacher_forced_sequences") + remainder.teacher_forced_sequences,
        "teacher_forced_tokens": total("teacher_forced_tokens") + remainder.teacher_forced_tokens,
        "seconds": total("seconds") + remainder.seconds,
    }


@dg.op(
    # Not required: a run that selects only some of the three emits only those (the graph asset can be subset).
    out={
        "divergence_matrices": dg.Out(dict, is_required=False),
        "divergence_per_response": dg.Out(pd.DataFrame, is_required=False),
        "divergence_per_pair_question": dg.Out(pd.DataFrame, is_required=False),
    },
    tags=MODEL_STEP_TAG,
    description="Reads every response's divergences from the cache (scoring any remainder) into matrices and tables.",
)
def aggregate_divergences(
    context: dg.OpExecutionContext,
    config: DivergenceConfig,
    llm: LLMResource,
    results: ResultsStore,
    eval_set: dict,
    generations: dict,
    shard_results: list[dict],
):
    started = time.monotonic()
    jobs = _jobs(llm, eval_set, generations, config)
    cache = DivergenceCache(results.cache_path("divergences"))
    remainder = _score(context, llm, results, jobs, config, "teacher forcing (remainder)")
    names = generations["persona_names"]
    responses = generations["responses"]
    values = cached_rows(jobs, cache)
    for job, found in zip(jobs, values):
        if found is None:
            raise dg.Failure(f"divergences of response {job.key[:12]} missing from the cache after scoring")
    per_response = per_response_table(responses, jobs, values, names)
    matrices = pair_matrices(per_response, names, config.averaging)
    table = pair_question_table(per_response, names, config.averaging)
    shard_results = sorted(shard_results, key=lambda s: s["shard"])
    noise_floor = dict(shard_results[0]["noise_floor"])
    # A duration is not a result: it goes to the metadata, so the output file reproduces byte for byte.
    noise_floor_seconds = noise_floor.pop("seconds", None)
    upper = matrices.js[np.triu_indices(len(names), k=1)]
    scored = _run_totals(shard_results, remainder)
    rule_metadata: dict[str, Any] = {"scoring_rule": config.scoring_rule}
    changed = None
    if config.scoring_rule != GENERATED:
        changed = not_round_tripping(responses, jobs)
        rule_metadata["responses_not_round_tripping"] = len(changed)
        if changed:
            listed = ", ".join(
                f"{c['persona']} q{c['question_index']} ({c['generated_tokens']} generated, "
                f"{c['scored_positions']} scored)"
                for c in changed[:20]
            )
            rule_metadata["not_round_tripping"] = listed
            context.log.warning(
                f"{len(changed)} of {len(responses)} responses do not round-trip through decode and re-tokenisation: "
                f"scored on the re-tokenised ids, as the earlier study did: {listed}"
            )
    seconds = scored.pop("seconds")
    selected = context.selected_output_names
    floor_nats = noise_floor["js_abs_nats"]
    metadata = {
        "headline": _headline(upper, floor_nats, len(names)),
        "js_matrix": matrix_table(names, matrices.js),
        "kl_matrix": matrix_table(names, matrices.kl),  # KL(row ‖ column)
        "averaging": config.averaging,
        "shards": config.shards,
        "js_mean": rounded(float(upper.mean())),
        "js_min": rounded(float(upper.min())),
        "js_max": rounded(float(upper.max())),
        # Shown at 4 significant digits; the exact value is in the output (`noise_floor`), which the
        # checks and analyses compare against.
        "noise_floor_js_nats": rounded(floor_nats),
        "noise_floor_js_rel": rounded(noise_floor.get("js_rel")),
        "noise_floor": dg.MetadataValue.json(noise_floor),
        "noise_floor_seconds": rounded(noise_floor_seconds, 3),
        "noise_floor_from_cache": bool(shard_results[0].get("noise_floor_from_cache")),
        "teacher_forcing_switches": dg.MetadataValue.json(shard_results[0]["teacher_forcing_switches"]),
        "responses": len(jobs),
        **rule_metadata,
        **scored,
        "teacher_forcing_seconds": rounded(seconds, 3),
        "tokens_per_second": (
            rounded(scored["teacher_forced_tokens"] / seconds)
            if seconds > 0 and scored["teacher_forced_tokens"]
            else None
        ),
        "aggregate_seconds": rounded(time.monotonic() - started, 3),
    }
    model = llm.describe()
    value = {
        "model": model,
        "method": method_record(
            model["device"],
            model["scoring_dtype"],
            resource=model["resource"],
            averaging=config.averaging,
            generation_dtype=model["dtype"],
            max_scorers_per_pass=config.max_scorers_per_pass,
            divergence_code_version=DIVERGENCE_CODE_VERSION,
            scoring_rule=config.scoring_rule,
            not_round_tripping=changed,
        ),
        "generation_settings": generations["settings"],
        "n_questions": len(EvalSet.from_dict(eval_set).questions),
        **matrices.to_dict(),
        "response_token_counts": [
            {
                "persona": r["persona"],
                "question_index": r["question_index"],
                "n_tokens": r["n_tokens"],
                "n_scored_positions": len(job.response_ids),
            }
            for r, job in zip(responses, jobs)
        ],
        "noise_floor": noise_floor,
    }
    # All three come from the same cached values at no extra cost; only the selected ones are emitted,
    # so a selection naming one of them (e.g. `divergence_matrices*`) runs and leaves the others as they were.
    values = {
        "divergence_matrices": value,
        "divergence_per_response": per_response,
        "divergence_per_pair_question": table,
    }
    unselected = sorted(set(values) - set(selected))
    if unselected:
        context.log.info(f"not selected in this run, so not written: {', '.join(unselected)}")
    for name in unselected:  # what the written ones were computed next to (published only next to these bytes)
        results.record_unselected(context.run.run_id, str(context.op_handle), dg.AssetKey(name), values[name])
    for name in sorted(set(values) & set(selected)):
        yield dg.Output(values[name], output_name=name, metadata=metadata if name == "divergence_matrices" else None)


def _headline(upper: np.ndarray, floor_nats: float | None, n_personas: int) -> str:
    """One line: the pair JS range and how many pairs clear the noise floor."""
    line = f"{n_personas} personas: pair JS {rounded(float(upper.min()))}–{rounded(float(upper.max()))} nats"
    line += f" (mean {rounded(float(upper.mean()))})"
    if floor_nats is None:
        return line + "; noise floor not measured"
    return (
        line
        + f"; {int((upper > floor_nats).sum())}/{upper.size} pairs above the noise floor {rounded(floor_nats)} nats"
    )


def _settings_for_each_op(settings: dict) -> dict:
    return {
        name: {"config": settings}
        for name in ("plan_teacher_forcing", "score_divergence_shard", "aggregate_divergences")
    }


# One set of settings for the whole graph asset (`ops.divergence_matrices.config`), handed to each
# op. Passed through as given: each op builds its DivergenceConfig at step start, where a value out
# of range fails like any other asset's setting (and eval_set has checked every setting before).
_divergence_settings = dg.ConfigMapping(
    config_fn=_settings_for_each_op, config_schema=DivergenceConfig.to_config_schema().as_field()
)


@dg.graph_multi_asset(
    outs={
        "divergence_matrices": dg.AssetOut(
            kinds={"torch"},
            code_version=CODE_VERSION,
            description=(
                "Teacher-forced Jensen-Shannon and KL divergences between every pair of personas: N×N JS "
                "(symmetric), KL[i][j] = KL(P_i‖P_j), KL_sym, |KL − KLᵀ| and the signed KL − KLᵀ, in nats, "
                "with the method, the model and the noise floor (a few responses re-scored alone and in "
                "other batch compositions: pair differences below it are not findings). Each response is "
                "scored under the personas its pairs need (pair-own: the generator and each other persona), "
                "averaged over its tokens, then over responses and questions as `averaging` says."
            ),
        ),
        "divergence_per_response": dg.AssetOut(
            kinds={"pandas"},
            code_version=CODE_VERSION,
            description=(
                "One row per (response, scoring pair): generator, question_index, persona_a, persona_b, "
                "js, kl_ab, kl_ba (means over the response's scored positions, nats), n_tokens (tokens generated) "
                "and n_scored_positions (positions averaged: n_tokens under the `generated` scoring rule, the "
                "re-tokenised ids after the prompt under `original_template`). outputs/divergence_per_response.csv."
            ),
        ),
        "divergence_per_pair_question": dg.AssetOut(
            kinds={"pandas"},
            code_version=CODE_VERSION,
            description="Pair values per question (both directions averaged as `averaging` says). "
            "outputs/divergence_per_pair_question.csv.",
        ),
    },
    group_name="model",
    config=_divergence_settings,
    can_subset=True,  # any one of the three can be selected (README: --select 'divergence_matrices*')
)
def divergence_matrices(eval_set: dict, generations: dict):
    shards = plan_teacher_forcing(generations)
    shard_results = shards.map(lambda shard: score_divergence_shard(eval_set, generations, shard))
    matrices, per_response, per_pair_question = aggregate_divergences(eval_set, generations, shard_results.collect())
    return {
        "divergence_matrices": matrices,
        "divergence_per_response": per_response,
        "divergence_per_pair_question": per_pair_question,
    }
