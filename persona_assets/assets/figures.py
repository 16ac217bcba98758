"""Figures of the analysis, for this run (`figures`) and for earlier results (`legacy_figures`).

The charts come from `persona_assets.analysis.figure_set`, imported when the asset runs: altair and the
statistics load in the step that draws, not when the definitions load (the CLI's start).
"""

import inspect

import dagster as dg

from persona_assets.assets.availability import AVAILABLE
from persona_assets.assets.availability import loaded_inputs as _inputs
from persona_assets.assets.availability import missing_inputs as _unavailable
from persona_assets.ui_metadata import verdict_line
from resources.results import ResultsStore


def build_figures_asset(
    inputs_key: dg.AssetKey,
    *,
    name_prefix: str,
    subdir: tuple[str, ...],
    group: str,
    extra_inputs: tuple[str, ...] = (),
) -> dg.AssetsDefinition:
    """The figures of the analysis assets named `name_prefix`…, drawn under figures/`subdir`; `extra_inputs`
    names the assets of this run only (per-token pass, within-persona baseline) whose figures are drawn too."""

    def key(name: str) -> dg.AssetKey:
        return dg.AssetKey(f"{name_prefix}{name}")

    extra_text = {
        "layer_divergences": "lens_leakage_by_depth: against depth, the leakage correlation of cosine and of "
        "logit-lens JS side by side (without leakage data: lens JS against the output's and against cosine). ",
        "divergence_profiles": "position_profile: JS by response-position bucket with question-bootstrap CIs for "
        "the most and least divergent pairs. ",
        "persona_baseline": "pair_js_vs_within_persona: each pair's JS against the within-persona level of its "
        "two personas. ",
    }
    extras = "".join(extra_text[name] for name in extra_inputs)
    description = inspect.cleandoc(
        "Heatmaps of JS (each averaging), KL and signed KL asymmetry; JS vs cosine per layer; "
        f"""pair JS with CIs; the hero figure.

        The hero figure (js_vs_leakage): JS vs leakage and cosine vs leakage side by side on the same
        directed pairs, ρ with the persona-permutation p and the crossed (source × target) bootstrap CI
        in the titles, each pair's JS with its 95% question-bootstrap CI, coloured by source, with a
        within-source panel and the permutation test of JS vs cosine as predictors.
        pair_js_uncertainty: every pair's JS with its question-bootstrap CI and the noise floor.
        {extras}PNG and interactive HTML under {"/".join(["figures", *subdir])}/ (the results resource's """
        "figures_dir, PERSONA_FIGURES_DIR); previews in the metadata."
    )
    ins = {
        "inputs": dg.AssetIn(inputs_key),
        "leakage_correlations": dg.AssetIn(key("leakage_correlations")),
        "kill_gate_verdicts": dg.AssetIn(key("kill_gate_verdicts")),
        **{name: dg.AssetIn(dg.AssetKey(name)) for name in extra_inputs},
    }

    @dg.asset(
        key=key("figures"),
        ins=ins,
        group_name=group,
        kinds={"altair"},
        code_version="4" if extra_inputs else "3",
        description=description,
    )
    def figures(
        context: dg.AssetExecutionContext,
        results: ResultsStore,
        inputs: dict,
        leakage_correlations: dict,
        kill_gate_verdicts: dict,
        **extra: dict,
    ) -> dict:
        if (missing := _unavailable(inputs)) is not None:
            return missing
        from persona_assets.analysis import charts
        from persona_assets.analysis.depth_figures import depth_figures
        from persona_assets.analysis.figure_set import build_figures

        built = build_figures(_inputs(inputs), leakage_correlations, extra.get("persona_baseline"))
        if "layer_divergences" in extra:
            built.update(depth_figures(extra["layer_divergences"], extra["divergence_profiles"]))
        directory = results.run_figures(context.run.run_id, *subdir, owner=context.asset_key)
        # Names relative to the figures folder: the value stays the same from run to run (byte for
        # byte); the run's own folder is in the metadata, the published one in `directory`.
        files, previews = charts.save_figures(built, directory)
        metadata = {
            "verdict": verdict_line(kill_gate_verdicts),
            "figures_dir": dg.MetadataValue.path(str(directory)),
            "published_dir": dg.MetadataValue.path(str(results.figures_path(*subdir))),
            "files": ", ".join(sorted(f"{stem}.png" for stem in files)),
        }
        # Every figure previewed in the metadata at the size it was designed (the text not shrunk): its
        # PNG, drawn at twice that, halved; the HTML beside it is interactive.
        for stem, preview in previews.items():
            metadata[f"preview_{stem}"] = dg.MetadataValue.md(preview)
        context.add_output_metadata(metadata)
        context.log.info(f"figures written to {directory}")
        return {AVAILABLE: True, "directory": str(results.figures_path(*subdir)), "files": files}

    return figures


figures = build_figures_asset(
    dg.AssetKey("analysis_inputs"),
    name_prefix="",
    subdir=(),
    group="analysis",
    extra_inputs=("layer_divergences", "divergence_profiles", "persona_baseline"),
)
