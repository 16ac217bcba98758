import dagster as dg
import pandas as pd

from persona_assets.config import GenerationConfig
from persona_assets.runs.errors import InputError
from persona_assets.assets.prompt_checks import refuse_unsafe_prompts
from persona_assets.inputs.eval_set import EvalSet
from persona_assets.runs.generation_cache import GenerationCache, generation_items
from persona_assets.runs.progress import Heartbeat, ProgressReporter
from persona_assets.inputs.response_quality import response_quality
from persona_assets.measure.responses import generate_into_cache, missing_items, response_records
from persona_assets.run_config_validation import effective_run_config, validate_run_config
from persona_assets.executor import MODEL_STEP_TAG
from persona_assets.runs.storage import write_csv
from resources.llm import LLMResource
from resources.results import ResultsStore


@dg.asset(
    group_name="model",
    kinds={"torch"},
    code_version="1",
    op_tags=MODEL_STEP_TAG,
)
def generations(
    context: dg.AssetExecutionContext, config: GenerationConfig, llm: LLMResource, results: ResultsStore, eval_set: dict
) -> dict:
    """Greedy responses for every persona × question (system = persona prompt, user = question).

    Token ids are kept and scored later as they are (never re-tokenized). Responses are cached by
    content (model, prompt ids, settings), so a re-run only generates what is new.
    """
    # Before the first model load: every setting of the run, cosine layers against the model's depth.
    try:
        validate_run_config(effective_run_config(context), context.job_def, model_layers=llm.num_layers())
    except InputError as exc:
        raise dg.Failure(str(exc)) from None
    evals = EvalSet.from_dict(eval_set)
    # Control tokens in a prompt or question, or a prompt that overflows the context: refused here.
    prompt_report = refuse_unsafe_prompts(llm, evals, max_new_tokens=config.max_new_tokens)
    model_info = llm.describe()
    cache = GenerationCache(results.cache_path("generations"))
    items = generation_items(llm, evals, config.max_new_tokens)

    missing = missing_items(items, cache)
    context.log.info(f"generations: {len(items) - len(missing)} cached, {len(missing)} to generate")
    progress = ProgressReporter("generate", context.log.info, unit="responses")
    # A batch reports only when it ends; the heartbeat keeps the run log alive meanwhile.
    with Heartbeat("generate", context.log.info):
        generate_into_cache(
            llm,
            missing,
            cache,
            max_new_tokens=config.max_new_tokens,
            batch_size=config.batch_size,
            progress=progress,
            warn=context.log.warning,
        )
    responses = response_records(items, cache, llm.decode)
    table = pd.DataFrame(responses).drop(columns=["token_ids"])
    write_csv(results.run_side_file(context.run.run_id, context.asset_key, "generations.csv"), table)
    quality = response_quality(responses)
    if quality["n_empty"]:
        context.log.warning(f"{quality['n_empty']} empty responses: {', '.join(quality['empty'][:20])}")
    context.add_output_metadata(
        {
            "n_responses": len(responses),
            "newly_generated": len(missing),
            "headline": f"{len(responses)} responses ({len(missing)} generated now), "
            f"mean {table['n_tokens'].mean():.1f} tokens, {quality['n_empty']} empty, "
            f"{quality['hit_max_new_tokens_share']:.0%} stopped at max_new_tokens",
            "mean_tokens": round(float(table["n_tokens"].mean()), 2),
            "hit_max_new_tokens": quality["hit_max_new_tokens"],
            "hit_max_new_tokens_share": quality["hit_max_new_tokens_share"],
            "n_empty": quality["n_empty"],
            **prompt_report,
            "empty_responses": ", ".join(quality["empty"][:20]) or "none",
            "sample": dg.MetadataValue.md(table.head(6)[["persona", "question", "text"]].to_markdown(index=False)),
        }
    )
    return {
        "model": model_info,
        "settings": {"max_new_tokens": config.max_new_tokens, "decoding": "greedy"},
        "persona_names": evals.persona_names,
        "n_questions": len(evals.questions),
        "responses": responses,
    }
