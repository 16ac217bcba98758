import altair as alt
import dagster as dg
import numpy as np
import pandas as pd

from persona_assets.core import charts
from persona_assets.storage import figures_dir, outputs_dir


def _title_with_rho(prefix: str, correlation: dict) -> str:
    rho = correlation.get("spearman_rho")
    if rho is None:
        return f"{prefix} (ρ undefined)"
    ci = correlation.get("spearman_ci95") or [None, None]
    ci_text = f", 95% CI [{ci[0]:.2f}, {ci[1]:.2f}]" if None not in ci else ""
    return f"{prefix}: Spearman ρ = {rho:.2f}{ci_text}, n = {correlation['n']}"


@dg.asset(group_name="analysis", kinds={"altair"}, code_version="1")
def figures(
    context: dg.AssetExecutionContext,
    divergence_matrices: dict,
    leakage_correlations: dict,
    kill_gate_verdicts: dict,
) -> dict:
    """Heatmaps of JS, KL and signed KL asymmetry; JS vs cosine per layer; JS and cosine vs leakage.

    PNG and interactive HTML under figures/ (PERSONA_FIGURES_DIR); small previews in the metadata.
    """
    names = divergence_matrices["persona_names"]
    js = np.asarray(divergence_matrices["js_matrix"], dtype=float)
    kl = np.asarray(divergence_matrices["kl_matrix"], dtype=float)
    averaging = divergence_matrices["method"]["averaging"]
    built: dict[str, alt.Chart] = {
        "js_heatmap": charts.heatmap(js, names, title=f"Jensen-Shannon divergence (nats, {averaging})", value_label="JS"),
        "kl_heatmap": charts.heatmap(kl, names, title="KL(row ‖ column) (nats)", value_label="KL"),
        "kl_asymmetry_heatmap": charts.heatmap(
            kl - kl.T, names, title="KL(row→col) − KL(col→row) (nats)", value_label="KL_signed_asym", diverging=True
        ),
    }
    pairs = pd.read_csv(outputs_dir() / "pairs.csv")
    pairs["pair"] = pairs["persona_a"] + " / " + pairs["persona_b"]
    layer_charts = [
        charts.scatter(
            pairs, x=f"cosine_{layer}", y="js", title=_title_with_rho(layer, leakage_correlations["js_vs_cosine"][layer]),
            tooltip=["pair", "js", f"cosine_{layer}"],
        )
        for layer in leakage_correlations["layers"]
    ]
    built["js_vs_cosine"] = alt.hconcat(*layer_charts).properties(title="JS vs hidden-state cosine, per layer")
    leakage = leakage_correlations["leakage"]
    if leakage["available"]:
        directed = pd.read_csv(outputs_dir() / "directed_leakage_pairs.csv")
        last_layer = leakage_correlations["layers"][-1]
        built["js_vs_leakage"] = alt.hconcat(
            charts.scatter(directed, x="js", y="rate", color="source", title=_title_with_rho("JS vs leakage", leakage["js_vs_leakage"]), tooltip=["source", "target", "js", "rate"]),
            charts.scatter(
                directed, x=f"cosine_{last_layer}", y="rate", color="source",
                title=_title_with_rho(f"cosine ({last_layer}) vs leakage", leakage["cosine_vs_leakage_same_pairs"][last_layer]),
                tooltip=["source", "target", f"cosine_{last_layer}", "rate"],
            ),
        ).properties(title="Same directed pairs: JS and cosine as leakage predictors")

    directory = figures_dir()
    files = {}
    for stem, chart in built.items():
        files[stem] = {kind: str(path) for kind, path in charts.save_chart(chart, directory, stem).items()}
    context.add_output_metadata(
        {
            "figures_dir": dg.MetadataValue.path(str(directory)),
            "js_heatmap_preview": dg.MetadataValue.md(charts.small_png_preview(built["js_heatmap"])),
            "kl_asymmetry_preview": dg.MetadataValue.md(charts.small_png_preview(built["kl_asymmetry_heatmap"])),
            "verdicts": ", ".join(f"{k}: {'KILLED' if kill_gate_verdicts[k]['killed'] else 'passed'}" for k in ("discrimination", "redundancy")),
        }
    )
    context.log.info(f"figures written to {directory}")
    return {"directory": str(directory), "files": files}
