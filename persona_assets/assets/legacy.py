"""Re-analysis of earlier results without a model: import them, then the usual analysis assets.

`legacy_results` reads a folder laid out like data/reference_study (setting `legacy_dir`); the
analysis assets named `legacy_…` (legacy_cosine_precheck, legacy_leakage_correlations,
legacy_kill_gate_verdicts, legacy_figures) are the same as this run's, built by the same
factories, and never depend on a model asset, so `--select` of this group materializes with no
model loaded. Their own names (not a key prefix, which the asset graph does not show) tell them
apart from this run's assets in the graph; their figures go to figures/legacy/.
"""

from pathlib import Path

import dagster as dg

from persona_assets.assets.analysis import build_analysis_assets
from persona_assets.assets.availability import AVAILABLE
from persona_assets.assets.figures import build_figures_asset
from persona_assets.config import LegacyConfig
from persona_assets.runs.errors import InputError

LEGACY_GROUP = "legacy"
LEGACY_NAME_PREFIX = "legacy_"
DEFAULT_LEGACY_DIR = LegacyConfig().legacy_dir


@dg.asset(group_name=LEGACY_GROUP, kinds={"pandas"}, code_version="3")
def legacy_results(context: dg.AssetExecutionContext, config: LegacyConfig) -> dict:
    """Earlier results (JS/KL matrices, cosines, marker leakage) imported and validated.

    Reads `legacy_dir`: divergence_matrices.json (required; JS with both averagings — the file's
    all-responses and pair-own recomputed from per_prompt_js), cosine_leakage_correlation.json and
    cosine_<N>_l<L>.json (each centring kept as its own cosine set), marker_eval/ (directed
    leakage). No noise floor: the imported matrices carry none, and the analyses say it is unknown.
    A bad file fails the step with a message naming it. When `legacy_dir` is left at its
    default and that folder does not exist, the legacy assets report "not available" instead of
    failing, so materializing everything on a project without earlier results stays green.
    """
    from persona_assets.analysis.earlier_results import inputs_from_legacy_dir

    folder = Path(config.legacy_dir)
    if not folder.exists() and config.legacy_dir == DEFAULT_LEGACY_DIR:
        note = (
            f"no folder {folder.resolve()} of earlier results (legacy_dir left at its default): nothing to re-analyse"
        )
        context.log.warning(note)
        context.add_output_metadata({"available": False})
        return {AVAILABLE: False, "note": note}
    try:
        inputs = inputs_from_legacy_dir(folder)
    except InputError as exc:
        raise dg.Failure(str(exc)) from None
    for note in inputs.notes:
        context.log.info(note)
    context.add_output_metadata(
        {
            "available": True,
            "legacy_dir": dg.MetadataValue.path(str(folder.resolve())),
            "personas": len(inputs.persona_names),
            "averagings": ", ".join(inputs.averagings),
            "cosine_sets": ", ".join(
                f"{k} ({cs.centring}: {', '.join(cs.layers)})" for k, cs in inputs.cosine_sets.items()
            ),
            "n_leakage_rows": len(inputs.leakage),
        }
    )
    return {AVAILABLE: True, **inputs.to_dict()}


legacy_cosine_precheck, legacy_leakage_correlations, legacy_kill_gate_verdicts = build_analysis_assets(
    legacy_results.key, name_prefix=LEGACY_NAME_PREFIX, group=LEGACY_GROUP
)
legacy_figures = build_figures_asset(
    legacy_results.key, name_prefix=LEGACY_NAME_PREFIX, subdir=("legacy",), group=LEGACY_GROUP
)

legacy_assets = [
    legacy_results,
    legacy_cosine_precheck,
    legacy_leakage_correlations,
    legacy_kill_gate_verdicts,
    legacy_figures,
]
