"""The analysis half of the graph: CPU only, no model.

The same four analysis assets — cosine_precheck, leakage_correlations, kill_gate_verdicts and
figures — exist twice, built by `build_analysis_assets` around one inputs asset each:
- this run: `analysis_inputs` (from divergence_matrices, persona_cosine, leakage_rates);
- earlier results: `legacy_results` (group "legacy", from a folder of files; no model involved),
  with the same analysis assets named `legacy_cosine_precheck`, `legacy_leakage_correlations`, ….
Both call the same core functions (`persona_assets.analysis.correlation_report`), so a re-analysis of earlier
results and a new run are computed and reported identically.
"""

import inspect
from pathlib import Path

import dagster as dg
import pandas as pd

from persona_assets.config import AnalysisConfig, KillGateConfig, PrecheckConfig
from persona_assets.assets.availability import AVAILABLE
from persona_assets.assets.availability import loaded_inputs as _inputs
from persona_assets.assets.availability import missing_inputs as _unavailable
from persona_assets.runs.errors import InputError
from persona_assets.runs.storage import write_csv
from persona_assets.ui_metadata import VERDICT_TAG, rounded, tag_run_with_verdict, verdict_line
from resources.results import ResultsStore

# Why earlier results have no within-persona baseline (the summary and the verdict say so).
NO_PARAPHRASE_DATA = "the earlier results have no paraphrase data (no teacher forcing under reworded prompts)"


@dg.asset(group_name="analysis", kinds={"pandas"}, code_version="3")
def analysis_inputs(
    context: dg.AssetExecutionContext,
    divergence_matrices: dict,
    divergence_per_response: pd.DataFrame,
    divergence_per_pair_question: pd.DataFrame,
    persona_cosine: dict,
    leakage_rates: dict,
) -> dict:
    """This run's divergences (with their noise floor), cosines, leakage and response lengths in the shape the
    analyses take.

    The same shape `legacy_results` gives earlier results, so both go through the same analysis code.
    """
    try:
        from persona_assets.analysis.matrices import inputs_from_run  # here: the statistics load with the step

        inputs = inputs_from_run(
            divergence_matrices, persona_cosine, leakage_rates, divergence_per_response, divergence_per_pair_question
        )
    except InputError as exc:
        raise dg.Failure(str(exc)) from None
    context.add_output_metadata(
        {
            "averagings": ", ".join(inputs.averagings),
            "n_leakage_rows": len(inputs.leakage),
            "noise_floor_js_nats": inputs.noise_floor.get("js_abs_nats"),
        }
    )
    return {AVAILABLE: True, **inputs.to_dict()}


def build_analysis_assets(
    inputs_key: dg.AssetKey, *, name_prefix: str, group: str, baseline_key: dg.AssetKey | None = None
) -> list[dg.AssetsDefinition]:
    """cosine_precheck, leakage_correlations and kill_gate_verdicts reading `inputs_key`, each name
    starting with `name_prefix` (so the graph, which shows a key's last part, tells the copies apart);
    kill_gate_verdicts also reads the within-persona baseline `baseline_key` when given."""

    def key(name: str) -> dg.AssetKey:
        return dg.AssetKey(f"{name_prefix}{name}")

    stem = name_prefix
    origin = "earlier results in legacy_dir" if name_prefix else "this run"
    verdict_tag = f"{VERDICT_TAG}{'.' + name_prefix.rstrip('_') if name_prefix else ''}"

    @dg.asset(
        key=key("cosine_precheck"),
        ins={"inputs": dg.AssetIn(inputs_key)},
        group_name=group,
        kinds={"pandas", "scipy"},
        code_version="3",
        description=inspect.cleandoc(
            "Does hidden-state cosine predict leakage better towards the output layers? "
            f"""(context, not a gate)

        From {origin}: Spearman and Pearson (p, n, source-clustered bootstrap CI) of cosine vs
        leakage per layer for each cosine set (one per centring, reported apart), each with a
        permutation test of persona labels and a two-way (source × target) bootstrap CI; which layers
        are present or missing, and whether the correlation rises from the shallowest to the deepest
        layer; from a cosine-vs-leakage file over all its pairs and over the core pairs."""
        ),
    )
    def cosine_precheck(context: dg.AssetExecutionContext, config: PrecheckConfig, inputs: dict) -> dict:
        if (missing := _unavailable(inputs)) is not None:
            return missing
        loaded = _inputs(inputs)
        from persona_assets.analysis import correlation_report as analyses

        result = analyses.cosine_precheck(
            loaded, n_boot=config.n_bootstrap, seed=config.seed, n_perm=config.n_permutations
        )
        if config.cosine_leakage_file:
            from persona_assets.inputs.formats import load_cosine_leakage_file

            try:
                file = load_cosine_leakage_file(Path(config.cosine_leakage_file))
                from_file = analyses.precheck_from_detail(
                    file.detail.rename(columns={"leakage": "rate"}),
                    loaded.persona_names,
                    file.centring,
                    n_boot=config.n_bootstrap,
                    seed=config.seed,
                    n_perm=config.n_permutations,
                )
            except InputError as exc:
                raise dg.Failure(f"ops.{context.op_def.name}.config.cosine_leakage_file: {exc}") from None
            result["from_file"] = {"path": config.cosine_leakage_file, **from_file}
        elif "from_file" not in result:
            result["from_file"] = {"note": "no cosine-vs-leakage file"}
        metadata = {}
        for label in [*loaded.cosine_sets, "from_file"]:
            section = result[label].get("all_pairs", result[label]) if label == "from_file" else result[label]
            for layer, c in section.get("by_layer", {}).items():
                metadata[f"spearman_{label}_{layer}"] = rounded(c["spearman_rho"])
        notes = [result[label]["note"] for label in loaded.cosine_sets if result[label].get("note")]
        metadata["headline"] = (
            f"no leakage data: {notes[0]}"
            if notes and not any(k.startswith("spearman_") for k in metadata)
            else f"cosine vs leakage at {sum(k.startswith('spearman_') for k in metadata)} layer(s)"
        )
        context.add_output_metadata(metadata)
        return result

    @dg.asset(
        key=key("leakage_correlations"),
        ins={"inputs": dg.AssetIn(inputs_key)},
        group_name=group,
        kinds={"pandas", "scipy"},
        code_version="4",
        description=inspect.cleandoc(
            "Is output-level similarity redundant with cosine, "
            f"""and does it predict leakage better?

        From {origin}, for every JS averaging (labelled) and every cosine set (one per centring):
        JS and KL_sym vs cosine per layer over unordered pairs; JS vs leakage and cosine vs leakage
        on the same directed pairs with the Meng–Rosenthal–Rubin / Steiger test; within-source
        correlations and the between-source share; KL asymmetry (signed and absolute); the length
        confound; the noise floor of JS next to the pair JS range (differences below it are not
        findings; unknown for imported results). Next to every correlation the test that respects the
        design: Mantel (persona-label permutation) for matrix vs matrix, leakage-label permutation and
        a two-way source × target bootstrap for directed pairs, a permutation test of the difference
        of JS and cosine as predictors. question_bootstrap: per-pair JS/KL SE and 95% CI over
        questions, the discrimination statistics, ρ(JS, cosine) and the pair differences judged
        against that uncertainty. Tables: outputs/{stem}pairs.csv, outputs/{stem}directed_leakage_pairs.csv."""
        ),
    )
    def leakage_correlations(
        context: dg.AssetExecutionContext, config: AnalysisConfig, results: ResultsStore, inputs: dict
    ) -> dict:
        if (missing := _unavailable(inputs)) is not None:
            return missing
        from persona_assets.analysis import correlation_report as analyses

        result, pairs, directed = analyses.leakage_correlations(
            _inputs(inputs), n_boot=config.n_bootstrap, seed=config.seed, n_perm=config.n_permutations
        )
        write_csv(results.run_side_file(context.run.run_id, context.asset_key, f"{stem}pairs.csv"), pairs)
        if len(directed):
            directed_name = f"{stem}directed_leakage_pairs.csv"
            write_csv(results.run_side_file(context.run.run_id, context.asset_key, directed_name), directed)
        metadata = {
            f"spearman_js_cosine_{layer}": rounded(c["spearman_rho"]) for layer, c in result["js_vs_cosine"].items()
        }
        metadata["leakage_available"] = result["leakage"]["available"]
        metadata["noise_floor_js_nats"] = rounded(result["noise_floor"]["noise_floor_js_nats"])
        if result["leakage"]["available"]:
            rho = result["leakage"]["js_vs_leakage"]["spearman_rho"]
            metadata["spearman_js_leakage"] = rounded(rho)
            metadata["headline"] = (
                f"JS vs leakage: Spearman ρ = {rounded(rho, 3)} (n = {result['leakage']['js_vs_leakage']['n']})"
            )
        else:
            metadata["headline"] = "no leakage data: only JS vs cosine was computed"
        metadata["pairs_csv"] = dg.MetadataValue.path(str(results.run_outputs(context.run.run_id) / f"{stem}pairs.csv"))
        context.add_output_metadata(metadata)
        return result

    verdict_ins = {"inputs": dg.AssetIn(inputs_key), "leakage_correlations": dg.AssetIn(key("leakage_correlations"))}
    if baseline_key is not None:
        verdict_ins["persona_baseline"] = dg.AssetIn(baseline_key)

    @dg.asset(
        key=key("kill_gate_verdicts"),
        ins=verdict_ins,
        group_name=group,
        kinds={"pandas"},
        code_version="5",
        description=inspect.cleandoc(f"""The pre-registered kill criteria on {origin}, each with its evidence.

        Discrimination (std, max/min ratio, coefficient of variation; a note when a threshold is
        unreachable by construction; the noise floor, the smallest gap between pair JS values and
        how many pair-JS differences fall below the floor) for every averaging; redundancy with cosine at every layer of
        every cosine set; per-question informativeness (spread of pair JS, flagged questions). Each
        verdict has a `call`: "decided by the data" when the question-bootstrap 95% CIs of the
        deciding statistics lie clear of their thresholds, else "too close to call". The
        within-persona baseline (pair JS against rewording one persona's prompt) joins the
        discrimination verdict as evidence, not as a rule{"" if baseline_key else "; earlier results have none"}."""),
    )
    def kill_gate_verdicts(
        context: dg.AssetExecutionContext, config: KillGateConfig, inputs: dict, leakage_correlations: dict, **extra
    ) -> dict:
        if (missing := _unavailable(inputs)) is not None:
            return missing
        from persona_assets.analysis import correlation_report as analyses

        verdicts = analyses.kill_gate_verdicts(
            _inputs(inputs),
            leakage_correlations,
            min_std=config.min_js_std,
            min_ratio=config.min_js_ratio,
            max_abs_rho=config.max_abs_js_cosine_rho,
            min_relative_question_spread=config.min_relative_question_spread,
            baseline=extra.get("persona_baseline"),  # present when built with baseline_key
            baseline_absent=NO_PARAPHRASE_DATA,
        )
        floor = verdicts["noise_floor"]
        line = verdict_line(verdicts)
        tag_run_with_verdict(context, verdict_tag, line)
        if any(verdicts[name]["killed"] for name in ("discrimination", "redundancy")):
            context.log.warning(f"kill gates on {origin}: {line}")
        within = verdicts["discrimination"]["evidence"]["within_persona_baseline"]
        context.add_output_metadata(
            {
                "verdict": line,
                **{f"{name}_killed": verdicts[name]["killed"] for name in ("discrimination", "redundancy")},
                "noise_floor_js_nats": rounded(floor["noise_floor_js_nats"]),
                "pair_js_differences_below_floor": floor["n_pair_js_differences_below_floor"],
                "noise_floor_note": floor["note"],
                "within_persona_baseline": (
                    f"{within['n_exceeding']}/{within['n_pairs']} pairs above the within-persona level"
                    if within["measured"] and within["n_exceeding"] is not None
                    else ("measured, no pair called" if within["measured"] else f"not measured: {within['reason']}")
                ),
            }
        )
        return {AVAILABLE: True, **verdicts}

    return [cosine_precheck, leakage_correlations, kill_gate_verdicts]


cosine_precheck, leakage_correlations, kill_gate_verdicts = build_analysis_assets(
    dg.AssetKey("analysis_inputs"), name_prefix="", group="analysis", baseline_key=dg.AssetKey("persona_baseline")
)
