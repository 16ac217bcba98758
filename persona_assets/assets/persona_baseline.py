"""`persona_baseline`: the within-persona yardstick (how much rewording a prompt moves its own persona's output).

Thin glue: the jobs and rows come from `persona_assets.measure.paraphrase_scoring`, the scoring from
`divergence_store.score_missing` (its own content-addressed cache, `cache/persona_baseline/`, so a
re-run scores only what is new and a killed run resumes), the comparison with the pair JS from
`persona_assets.analysis.persona_baseline`.
"""

import time

import dagster as dg
import pandas as pd

from persona_assets.config import PersonaBaselineConfig
from persona_assets.executor import MODEL_STEP_TAG
from persona_assets.inputs.eval_set import EvalSet
from persona_assets.measure.divergence_store import DivergenceCache, cached_rows, score_missing
from persona_assets.measure.paraphrase_scoring import (
    paraphrase_jobs,
    paraphrase_rows,
    paraphrases_used,
    within_persona_per_question,
)
from persona_assets.measure.scoring_rule import GENERATED
from persona_assets.runs.errors import InputError
from persona_assets.runs.progress import Heartbeat, ProgressReporter
from persona_assets.runs.storage import write_csv
from persona_assets.ui_metadata import rounded
from resources.llm import LLMResource
from resources.results import ResultsStore

CODE_VERSION = "1"
ROWS_FILE = "persona_baseline_per_response.csv"


def _why_not(config: PersonaBaselineConfig, evals: EvalSet, divergence_matrices: dict) -> str | None:
    """Why no baseline can be measured in this run, or None."""
    if config.max_paraphrases == 0:
        return "max_paraphrases is 0 in this run's settings (ops.persona_baseline.config)"
    if not paraphrases_used(evals, config.max_paraphrases):
        files = evals.sources.get("personas_file", "the personas file")
        return f"no persona of this run has paraphrases ({files}: `paraphrases:` under a persona)"
    rule = (divergence_matrices.get("method") or {}).get("scoring_rule", GENERATED)
    if rule != GENERATED:
        return f"the pair JS was scored under the {rule!r} rule; the baseline is measured under {GENERATED!r} only"
    return None


def _table(value: dict) -> dg.MetadataValue:
    columns = ["persona_a", "persona_b", "js", "within_level", "ratio", "exceeds_within"]
    records = [
        dg.TableRecord({c: rounded(r[c]) if isinstance(r[c], float) else r[c] for c in columns})
        for r in sorted(value["pairs"], key=lambda r: -(r["ratio"] or 0))
    ]
    schema = dg.TableSchema(
        columns=[dg.TableColumn(c, "string" if c.startswith("persona") else "float") for c in columns[:-1]]
        + [dg.TableColumn("exceeds_within", "bool")]
    )
    return dg.MetadataValue.table(records=records, schema=schema)


def _persona_table(value: dict) -> dg.MetadataValue:
    records = [
        dg.TableRecord(
            {
                "persona": p["persona"],
                "within_js": rounded(p["within_js"]),
                "ci95_low": rounded(p["ci95"][0]),
                "ci95_high": rounded(p["ci95"][1]),
            }
        )
        for p in value["personas"]
    ]
    columns = [dg.TableColumn("persona", "string")] + [
        dg.TableColumn(c, "float") for c in ("within_js", "ci95_low", "ci95_high")
    ]
    return dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=columns))


@dg.asset(
    group_name="model",
    kinds={"torch"},
    code_version=CODE_VERSION,
    op_tags=MODEL_STEP_TAG,
)
def persona_baseline(
    context: dg.AssetExecutionContext,
    config: PersonaBaselineConfig,
    llm: LLMResource,
    results: ResultsStore,
    eval_set: dict,
    generations: dict,
    divergence_matrices: dict,
    divergence_per_pair_question: pd.DataFrame,
) -> dict:
    """The within-persona yardstick: is a pair's JS larger than rewording one persona's prompt?

    Each persona's own responses are teacher-forced under its prompt and under each of its
    paraphrases (`paraphrases:` in the personas file; the first `max_paraphrases`); the JS between
    the two, averaged like the output JS (tokens, paraphrases, questions), is the persona's
    within-persona JS, with a question-bootstrap CI. Per pair: JS(A, B) / level(A, B), level =
    (within(A) + within(B)) / 2, and whether JS − level exceeds its question-bootstrap uncertainty;
    the share of pairs that do goes to the discrimination verdict as evidence (not a kill rule).
    Without paraphrases it says plainly that no baseline was measured. Per response and paraphrase:
    outputs/persona_baseline_per_response.csv.
    """
    # Imported here: the comparison's question bootstrap brings scipy.stats (0.4 s), which loading the definitions
    # (every CLI start, every step process) should not pay.
    from persona_assets.analysis.persona_baseline import NOT_MEASURED, baseline_comparison, not_measured

    started = time.monotonic()
    evals = EvalSet.from_dict(eval_set)
    reason = _why_not(config, evals, divergence_matrices)
    if reason is not None:
        context.log.info(f"{NOT_MEASURED}: {reason}")
        value = not_measured(reason)
        context.add_output_metadata({"read_first": value["read_first"], "measured": False})
        return value
    try:
        jobs = paraphrase_jobs(llm, eval_set, generations, config.max_paraphrases)
    except InputError as exc:
        raise dg.Failure(str(exc)) from exc
    cache = DivergenceCache(results.cache_path("persona_baseline"))
    label = "within-persona baseline"
    with Heartbeat(label, context.log.info):
        stats = score_missing(
            llm,
            jobs,
            cache,
            max_scorers_per_pass=config.max_scorers_per_pass,
            responses_per_batch=config.responses_per_batch,
            log=context.log.info,
            warn=context.log.warning,
            progress=ProgressReporter(label, context.log.info, unit="responses"),
            prepare=llm.load_for_teacher_forcing,
        )
    values = cached_rows(jobs, cache)
    if any(found is None for found in values):
        raise dg.Failure("within-persona divergences missing from the cache after scoring")
    rows = paraphrase_rows(generations["responses"], jobs, values, evals.persona_names)
    write_csv(results.run_side_file(context.run.run_id, context.asset_key, ROWS_FILE), rows)
    value = baseline_comparison(
        divergence_per_pair_question,
        within_persona_per_question(rows),
        n_boot=config.n_bootstrap,
        seed=config.seed,
    )
    averaging = divergence_matrices.get("averaging", "pair_own")
    floor = (divergence_matrices.get("noise_floor") or {}).get("js_abs_nats")
    value |= {
        "averaging": averaging,
        "paraphrases": paraphrases_used(evals, config.max_paraphrases),
        "n_paraphrases_same_as_prompt": int(rows["same_prompt_ids"].sum()),
        "noise_floor_js_nats": floor,
        "n_personas_within_below_noise_floor": (
            None if floor is None else sum(p["within_js"] <= floor for p in value["personas"])
        ),
    }
    if averaging != "pair_own":
        value["averaging_note"] = (
            f"the pair JS averages over {averaging}; the within-persona JS over each persona's own responses"
        )
    context.add_output_metadata(
        {
            "read_first": value["read_first"],
            "measured": True,
            "pairs": _table(value),
            "within_persona_js": _persona_table(value),
            "share_exceeding": rounded(value["share_exceeding"]),
            "ratio_median": rounded(value["ratio_median"]),
            "responses_scored_now": stats.responses_computed,
            "responses_from_cache": stats.responses_complete_in_cache,
            "teacher_forced_tokens": stats.teacher_forced_tokens,
            "teacher_forcing_seconds": rounded(stats.seconds, 3),
            "seconds": rounded(time.monotonic() - started, 3),
        }
    )
    return value
