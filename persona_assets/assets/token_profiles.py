"""Beyond one number per pair: `layer_divergences` (logit lens through depth) and `divergence_profiles`
(where in the response, which tokens), two assets of one step over one cached per-token pass.

The pass (`resources.token_profile`, through `llm.token_profiles`) teacher-forces the responses the
divergence step scored (the same jobs: pair-own or all-responses, the same scoring rule) and keeps per
response and pair: response means of JS/KL at each lens layer (the cosine layers + the last layer, =
the output), the per-token output JS and the top vocabulary terms of Σ_t KL both ways
(`measure.profile_store`, content-addressed: a re-run reuses it). Tables: `measure.token_profiles`;
correlations and CIs: `analysis.depth_report`.
"""

import time
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from persona_assets.config import ProfileConfig
from persona_assets.executor import MODEL_STEP_TAG
from persona_assets.measure import token_profiles as tables
from persona_assets.measure.profile_store import ProfileCache, cached_profiles, score_missing_profiles
from persona_assets.measure.response_jobs import response_jobs
from persona_assets.runs.errors import InputError
from persona_assets.runs.progress import Heartbeat, ProgressReporter
from persona_assets.runs.storage import write_csv
from persona_assets.ui_metadata import matrix_table, rounded
from resources.llm import LLMResource
from resources.results import ResultsStore

CODE_VERSION = "1"
LAYER_CONVENTION = (
    "lens at layer L: the residual stream after decoder layer L (1-based), through the model's final norm and "
    "its unembedding; at the last layer the model's own output distribution"
)
# "To float rounding" per scoring dtype: float32 forwards differ by a few 1e-6 relative between batch
# shapes (docs/performance.md); bf16/fp16 by the dtype's rounding.
LAST_LAYER_TOLERANCE = {"float32": 1e-4, "bfloat16": 2e-2, "float16": 2e-2}


def _decode(llm: LLMResource, token_id: int) -> str:
    return llm.tokenizer.decode([int(token_id)], skip_special_tokens=False)


def _last_layer_gap(lens: pd.DataFrame, per_response: pd.DataFrame, output_layer: int) -> dict[str, Any]:
    """The lens's last-layer response means against the divergence step's (per response and pair)."""
    keys = ["generator", "question_index", "persona_a", "persona_b"]
    mine = lens[lens["layer"] == output_layer][[*keys, "js"]]
    joined = mine.merge(per_response[[*keys, "js"]], on=keys, suffixes=("_lens", "_output"))
    gap = np.abs(joined["js_lens"] - joined["js_output"]).to_numpy()
    relative = gap / np.maximum(joined["js_output"].abs().to_numpy(), 1e-12)
    return {
        "n_compared": int(len(joined)),
        "n_expected": int(len(mine)),
        "max_abs_gap": float(gap.max()) if gap.size else None,
        "max_relative_gap": float(relative.max()) if relative.size else None,
    }


def _depth_table(report: dict[str, Any]) -> dg.MetadataValue:
    def rho(section: dict[str, Any] | None, test: str, p_key: str) -> tuple[float | None, float | None]:
        section = section or {}
        return rounded(section.get("spearman_rho")), rounded((section.get(test) or {}).get(p_key))

    records = []
    for label, entry in report["by_layer"].items():
        out_rho, _ = rho(entry["js_vs_output"], "mantel", "spearman_p")
        cos_rho, cos_p = rho(entry.get("js_vs_cosine"), "mantel", "spearman_p")
        leak_rho, leak_p = rho(entry.get("js_vs_leakage"), "persona_permutation", "spearman_p")
        cl_rho, _ = rho(entry.get("cosine_vs_leakage"), "persona_permutation", "spearman_p")
        records.append(
            dg.TableRecord(
                {
                    "layer": label,
                    "mean pair JS": rounded(entry["pair_js_mean"]),
                    "ρ vs output JS": out_rho,
                    "ρ vs cosine": cos_rho,
                    "Mantel p": cos_p,
                    "ρ vs leakage": leak_rho,
                    "permutation p": leak_p,
                    "cosine ρ vs leakage": cl_rho,
                }
            )
        )
    columns = [dg.TableColumn("layer", "string")] + [
        dg.TableColumn(name, "float")
        for name in (
            "mean pair JS",
            "ρ vs output JS",
            "ρ vs cosine",
            "Mantel p",
            "ρ vs leakage",
            "permutation p",
            "cosine ρ vs leakage",
        )
    ]
    return dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=columns))


def _token_table(rows: pd.DataFrame) -> dg.MetadataValue:
    columns = ["persona_a", "persona_b", "direction", "rank", "token", "term", "share"]
    records = [
        dg.TableRecord({c: rounded(r[c]) if isinstance(r[c], float) else r[c] for c in columns})
        for r in rows[columns].to_dict(orient="records")
    ]
    schema = dg.TableSchema(
        columns=[dg.TableColumn(c, "float" if c in ("term", "share") else "string") for c in columns]
    )
    return dg.MetadataValue.table(records=records, schema=schema)


def _extremes(js: np.ndarray, names: list[str]) -> dict[str, Any]:
    i, j = np.triu_indices(len(names), k=1)
    values = js[i, j]
    most, least = int(np.argmax(values)), int(np.argmin(values))
    return {
        "most_divergent": [names[i[most]], names[j[most]]],
        "least_divergent": [names[i[least]], names[j[least]]],
        "by": "output JS of this pass (the lens's last layer)",
    }


@dg.multi_asset(
    outs={
        "layer_divergences": dg.AssetOut(
            kinds={"torch"},
            code_version=CODE_VERSION,
            is_required=False,
            description=(
                "Divergence through depth (logit lens): per lens layer (the cosine layers and the last layer, which "
                "is the output) the N×N JS and KL between personas of the residual stream through the final norm and "
                "unembedding at every response token, aggregated like the output divergences; ρ(layer JS, output "
                "JS), ρ(layer JS, cosine at that layer) with Mantel, ρ(layer JS, leakage) and cosine vs leakage at "
                "that layer with the persona-permutation test and crossed bootstrap. Per response: "
                "layer_divergences_per_response.csv."
            ),
        ),
        "divergence_profiles": dg.AssetOut(
            kinds={"pandas"},
            code_version=CODE_VERSION,
            is_required=False,
            description=(
                "Where in the response and which tokens: per pair, mean output JS by response-position bucket "
                "(position_buckets) with question-bootstrap 95% CIs; the vocabulary items with the largest terms of "
                "KL(A‖B) and KL(B‖A) summed over positions (top_k, decoded, with their share of the total: "
                "vocabulary_share_definition). Tables: divergence_profiles_buckets.csv, divergence_profiles_tokens.csv."
            ),
        ),
    },
    group_name="model",
    can_subset=True,
    op_tags=MODEL_STEP_TAG,
)
def token_profiles(
    context: dg.AssetExecutionContext,
    config: ProfileConfig,
    llm: LLMResource,
    results: ResultsStore,
    eval_set: dict,
    generations: dict,
    divergence_matrices: dict,
    divergence_per_response: pd.DataFrame,
    persona_cosine: dict,
    leakage_rates: dict,
):
    started = time.monotonic()
    if config.top_k > config.top_k_stored:
        raise dg.Failure(f"top_k ({config.top_k}) must not exceed top_k_stored ({config.top_k_stored})")
    method = divergence_matrices["method"]
    averaging, rule = method["averaging"], method.get("scoring_rule", "generated")
    try:
        jobs = response_jobs(llm, eval_set, generations, averaging, rule)
    except InputError as exc:
        raise dg.Failure(str(exc)) from exc
    responses = generations["responses"]
    if config.n_questions:
        keep = [k for k, r in enumerate(responses) if r["question_index"] < config.n_questions]
        responses, jobs = [responses[k] for k in keep], [jobs[k] for k in keep]
    names = list(generations["persona_names"])
    num_layers = int(persona_cosine["num_model_layers"])
    layers = sorted({int(x) for x in persona_cosine["layers"] if int(x) >= 1} | {num_layers})
    cache = ProfileCache(results.cache_path("token_profiles"))
    with Heartbeat("per-token pass", context.log.info):
        stats = score_missing_profiles(
            llm,
            jobs,
            cache,
            layers,
            top_k_stored=config.top_k_stored,
            max_scorers_per_pass=config.max_scorers_per_pass,
            responses_per_batch=config.responses_per_batch,
            progress=ProgressReporter("per-token pass", context.log.info, unit="responses"),
            prepare=llm.load_for_teacher_forcing,
        )
    records = cached_profiles(jobs, cache, layers, config.top_k_stored)
    lens = tables.lens_response_table(responses, jobs, records, names)
    matrices = tables.lens_matrices(lens, names, averaging)
    leakage = pd.DataFrame(leakage_rates.get("rows") or [], columns=["source", "target", "rate"])
    cosine = {k: np.asarray(m, dtype=float) for k, m in persona_cosine["cosine_matrices"].items()}
    from persona_assets.analysis.depth_report import depth_headline, layer_report, profile_headline, profile_report

    report = layer_report(
        {layer: m.js for layer, m in matrices.items()},
        names,
        cosine,
        leakage,
        n_boot=config.n_bootstrap,
        seed=config.seed,
        n_perm=config.n_permutations,
    )
    common = {
        "model": llm.describe(),
        "persona_names": names,
        "averaging": averaging,
        "scoring_rule": rule,
        "n_responses": len(jobs),
        "questions": sorted({r["question_index"] for r in responses}),
    }
    lens_value = {
        **common,
        "layers": layers,
        "output_layer": num_layers,
        "layer_convention": LAYER_CONVENTION,
        "matrices": {f"layer{layer}": m.to_dict() for layer, m in matrices.items()},
        "report": report,
        "last_layer_vs_divergence_step": _last_layer_gap(lens, divergence_per_response, num_layers)
        | {"tolerance_relative": LAST_LAYER_TOLERANCE.get(common["model"]["scoring_dtype"], 2e-2)},
    }
    buckets = tables.bucket_table(responses, jobs, records, names, config.position_buckets)
    per_question = tables.bucket_pair_question_table(buckets, names, averaging)
    labels = tables.bucket_labels(config.position_buckets)
    profile = profile_report(per_question, labels, n_boot=config.n_bootstrap, seed=config.seed)
    vocabulary, gaps = tables.vocabulary_table(responses, jobs, records, names, averaging, config.top_k)
    vocabulary.insert(5, "token", [_decode(llm, t) for t in vocabulary["token_id"]])
    term_gap, kl_sum = tables.term_sum_gaps(gaps)
    bucket_gaps = tables.bucket_sum_gaps(buckets)
    extremes = _extremes(matrices[num_layers].js, names)
    profiles_value = {
        **common,
        "position_buckets": list(config.position_buckets),
        "buckets": labels,
        **profile,
        "extremes": extremes,
        "vocabulary": vocabulary.to_dict(orient="records"),
        "top_k": config.top_k,
        "top_k_stored": config.top_k_stored,
        "vocabulary_share_definition": tables.VOCABULARY_SHARE_DEFINITION.format(k=config.top_k_stored),
        "sum_checks": {
            "bucket_sum_max_gap": float(bucket_gaps.max()) if bucket_gaps.size else 0.0,
            "term_sum_max_gap": float(term_gap.max()) if term_gap.size else 0.0,
            "term_sum_max_relative_gap": float((term_gap / np.maximum(np.abs(kl_sum), 1e-9)).max())
            if term_gap.size
            else 0.0,
        },
    }
    run_id = context.run.run_id
    for asset, name, frame in (
        ("layer_divergences", "layer_divergences_per_response.csv", lens),
        ("divergence_profiles", "divergence_profiles_buckets.csv", pd.DataFrame(profile["pairs"])),
        ("divergence_profiles", "divergence_profiles_tokens.csv", vocabulary),
    ):
        write_csv(results.run_side_file(run_id, dg.AssetKey(asset), name), frame)
    selected = context.op_execution_context.selected_output_names
    timing = {
        "responses_from_cache": stats["responses_from_cache"],
        "responses_scored_now": stats["responses_computed"],
        "pass_seconds": rounded(stats["seconds"], 3),
        "step_seconds": rounded(time.monotonic() - started, 3),
    }
    if "layer_divergences" in selected:
        metadata = {
            "headline": depth_headline(lens_value),
            "depth": _depth_table(report),
            **{f"js_matrix_layer{layer}": matrix_table(names, m.js) for layer, m in matrices.items()},
            "layers": str(layers),
            **timing,
        }
        yield dg.Output(lens_value, output_name="layer_divergences", metadata=metadata)
    if "divergence_profiles" in selected:
        first = vocabulary.groupby(["persona_a", "persona_b", "direction"]).head(3)
        metadata = {
            "headline": profile_headline(profiles_value),
            "top_tokens": _token_table(first),
            "share_definition": profiles_value["vocabulary_share_definition"],
            **timing,
        }
        yield dg.Output(profiles_value, output_name="divergence_profiles", metadata=metadata)
