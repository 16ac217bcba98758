"""The figures of one analysis, built as altair charts from `AnalysisInputs` and the leakage correlations.

`build_figures` is what the `figures` assets draw (and the GPU benchmark times); saving, previews and
metadata stay in the asset. altair is imported here, so a process that draws no figure never loads it.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from persona_assets.analysis import charts
from persona_assets.analysis.baseline_figure import baseline_figure
from persona_assets.analysis.matrices import AnalysisInputs
from persona_assets.stats.difference_power import ALPHA as DIFFERENCE_ALPHA
from persona_assets.stats.difference_power import power_text
from persona_assets.stats.intervals import short_label
from persona_assets.analysis.pair_tables import cosine_column, directed_pair_table, js_column, unordered_pair_table


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _design_title(prefix: str, correlation: dict) -> str:
    """ρ with the design-respecting evidence: the Mantel or persona-permutation p and the crossed CI."""
    rho = correlation.get("spearman_rho")
    if rho is None:
        return f"{prefix} (ρ undefined)"
    parts = [f"{prefix}: ρ = {rho:.2f}"]
    if "mantel" in correlation:
        parts.append(f"Mantel p = {_p(correlation['mantel'].get('spearman_p'))}")
    if "persona_permutation" in correlation:
        parts.append(f"permutation p = {_p(correlation['persona_permutation'].get('spearman_p'))}")
    ci = (correlation.get("crossed_bootstrap") or {}).get("spearman_ci95")
    if ci:
        parts.append(f"crossed CI [{ci[0]:.2f}, {ci[1]:.2f}] (liberal)")
    return "; ".join(parts) + f"; n = {correlation['n']}"


def _pair_intervals(correlations: dict, averaging: str) -> pd.DataFrame | None:
    """The question-bootstrap CI of each pair's JS (unordered pair key), or None when not computed."""
    qb = (correlations.get("question_bootstrap") or {}).get(averaging) or {}
    if not qb.get("available"):
        return None
    rows = [
        {
            "pair_key": frozenset((r["persona_a"], r["persona_b"])),
            "js_lo": r["ci95"][0],
            "js_hi": r["ci95"][1],
            "js_se": r["se"],
        }
        for r in qb["pairs"]
    ]
    return pd.DataFrame(rows)


def pair_js_uncertainty_figure(inputs: AnalysisInputs, correlations: dict) -> alt.LayerChart | None:
    """Every pair's JS with its 95% question-bootstrap CI, sorted; the noise floor as a line when measured."""
    averaging = inputs.primary_averaging
    qb = (correlations.get("question_bootstrap") or {}).get(averaging) or {}
    if not qb.get("available"):
        return None
    frame = pd.DataFrame(
        [
            {
                "pair": f"{r['persona_a']} / {r['persona_b']}",
                "js": r["js"],
                "ci_lo": r["ci95"][0],
                "ci_hi": r["ci95"][1],
            }
            for r in qb["pairs"]
        ]
    )
    diffs = qb["pair_differences"]
    floor = correlations.get("noise_floor", {}).get("noise_floor_js_nats")
    precision = correlations.get("noise_floor", {}).get("scoring_precision_js_nats")
    subtitle = [
        f"95% CI: bootstrap over the {qb['n_questions']} questions ({qb['n_boot']} resamples)"
        f"{short_label('pair_js')}; median SE "
        f"{diffs['median_pair_se']:.2g} nats vs median gap between neighbouring pairs "
        f"{diffs['median_gap_between_neighbouring_pair_values']:.2g}",
        f"{diffs['n_within_question_uncertainty']} of {diffs['n_pair_differences']} pair differences lie within the "
        "question uncertainty; "
        + ("noise floor unknown" if floor is None else f"noise floor {floor:.2g} nats (dashed)")
        + ("" if precision is None else f"; scoring precision (vs float32) {precision:.2g} nats")
        + f"; {diffs['n_findings']} are findings",
    ]
    return charts.ranked_intervals(
        frame,
        label="pair",
        value="js",
        lo="ci_lo",
        hi="ci_hi",
        title=f"Pair JS ({averaging}) with question-level uncertainty",
        subtitle=subtitle,
        reference=floor,
        reference_label="noise floor",
    )


def hero_figure(inputs: AnalysisInputs, correlations: dict) -> alt.Chart | None:
    """JS vs leakage and cosine vs leakage on the same directed pairs, coloured by source, and the
    within-source correlations of both, per source. None when there is no leakage or no cosine."""
    leakage = correlations["leakage"]
    cosine_set = correlations.get("primary_cosine_set")
    if not leakage.get("available") or cosine_set is None:
        return None
    averaging = inputs.primary_averaging
    layer = inputs.cosine_sets[cosine_set].layers[-1]
    centring = inputs.cosine_sets[cosine_set].centring
    directed = directed_pair_table(inputs)
    js_col, cos_col = js_column(averaging), cosine_column(cosine_set, layer)
    frame = directed.rename(columns={js_col: "js", cos_col: "cosine"})[["source", "target", "rate", "js", "cosine"]]
    intervals = _pair_intervals(correlations, averaging)
    js_title = _design_title(f"JS ({averaging}) vs leakage", leakage["js_vs_leakage"])
    if intervals is not None:
        frame["pair_key"] = [frozenset(p) for p in zip(frame["source"], frame["target"])]
        frame = frame.merge(intervals, on="pair_key", how="left").drop(columns="pair_key")
        js_panel = charts.scatter_with_x_intervals(
            frame,
            x="js",
            lo="js_lo",
            hi="js_hi",
            y="rate",
            color="source",
            title=js_title,
            subtitle="bars: 95% CI of the pair's JS over questions",
            tooltip=["source", "target", "js", "js_lo", "js_hi", "rate"],
        )
    else:
        js_panel = charts.scatter(
            frame, x="js", y="rate", color="source", title=js_title, tooltip=["source", "target", "js", "rate"]
        )
    cos_panel = charts.scatter(
        frame,
        x="cosine",
        y="rate",
        color="source",
        title=_design_title(f"cosine ({layer}) vs leakage", leakage["cosine_vs_leakage_same_pairs"][cosine_set][layer]),
        tooltip=["source", "target", "cosine", "rate"],
    )
    js_within = leakage["within_source"]["js"]
    cos_within = leakage["within_source"]["cosine"][cosine_set][layer]
    rows = []
    for predictor, within in (("JS", js_within), (f"cosine {layer}", cos_within)):
        for source, c in within["per_source"]["per_group"].items():
            rows.append({"source": source, "predictor": predictor, "spearman_rho": c["spearman_rho"], "n": c["n"]})
    within_frame = pd.DataFrame(rows)
    undefined = sorted(set(within_frame.loc[within_frame["spearman_rho"].isna(), "source"]))
    within_frame = within_frame.dropna(subset=["spearman_rho"])
    js_share = js_within["decomposition_spearman"]["between_share"]
    cos_share = cos_within["decomposition_spearman"]["between_share"]
    within_panel = (
        alt.Chart(
            within_frame,
            title=alt.Title(
                "Within each source: Spearman ρ with leakage",
                subtitle=[
                    f"mean within ρ: JS {_fmt(js_within['per_source']['mean_within_spearman'])}, "
                    f"cosine {_fmt(cos_within['per_source']['mean_within_spearman'])}",
                    f"between-source share of pooled ρ: JS {_fmt(js_share)}, cosine {_fmt(cos_share)}",
                ]
                + ([f"undefined (constant leakage or predictor): {', '.join(undefined)}"] if undefined else []),
            ),
        )
        .mark_point(size=80, filled=True)
        .encode(
            x=alt.X("spearman_rho:Q", scale=alt.Scale(domain=[-1, 1]), title="within-source Spearman ρ"),
            y=alt.Y("source:N", title=None),
            color=alt.Color("predictor:N"),
            shape=alt.Shape("predictor:N"),
            tooltip=["source", "predictor", alt.Tooltip("spearman_rho:Q", format=".3f"), "n"],
        )
        .properties(width=260, height=220)
    )
    comparison = leakage["js_vs_cosine_as_predictors"][cosine_set][layer]
    difference = comparison.get("permutation_difference", {})
    subtitle = [f"{len(frame)} directed pairs, {frame['source'].nunique()} sources; cosine centred by the {centring}"]
    if difference.get("difference") is not None:
        ci = (comparison.get("crossed_bootstrap_difference") or {}).get("spearman_difference_ci95")
        subtitle.append(
            f"JS vs cosine as predictors: ρ(−JS) − ρ(cosine) = {difference['difference']:+.2f}, permutation p = "
            f"{_p(difference['p_two_sided'])}"
            + (f", crossed 95% CI [{ci[0]:+.2f}, {ci[1]:+.2f}] (liberal)" if ci else "")
            + f" ({difference['n_permutations']} permutations of persona labels)"
        )
        if difference["p_two_sided"] >= DIFFERENCE_ALPHA:
            power = (leakage.get("difference_power_by_cosine") or {}).get(f"{cosine_set}/{layer}")
            subtitle.append(f"no significant difference; {power_text(power) if power else 'power not simulated'}")
    return (
        alt.hconcat(js_panel, cos_panel, within_panel)
        .resolve_scale(color="independent", shape="independent")
        .properties(title=alt.Title("Same directed pairs: JS and cosine as leakage predictors", subtitle=subtitle))
    )


def build_figures(inputs: AnalysisInputs, correlations: dict, baseline: dict | None = None) -> dict[str, alt.Chart]:
    """Every figure of one analysis, by file stem; `baseline` (the `persona_baseline` value) adds its figure."""
    names = inputs.persona_names
    kl = inputs.kl
    built: dict[str, alt.Chart] = {}
    for averaging, js in inputs.js.items():
        stem = "js_heatmap" if averaging == inputs.primary_averaging else f"js_heatmap_{averaging}"
        built[stem] = charts.heatmap(
            js, names, title=f"Jensen-Shannon divergence (nats, {averaging})", value_label="JS"
        )
    built["kl_heatmap"] = charts.heatmap(
        kl, names, title=f"KL(row ‖ column) (nats, {inputs.kl_averaging})", value_label="KL"
    )
    built["kl_asymmetry_heatmap"] = charts.heatmap(
        kl - kl.T, names, title="KL(row→col) − KL(col→row) (nats)", value_label="KL_signed_asym", diverging=True
    )
    pairs = unordered_pair_table(inputs)
    pairs["pair"] = pairs["persona_a"] + " / " + pairs["persona_b"]
    js_col = js_column(inputs.primary_averaging)
    panels = []
    for label, cs in inputs.cosine_sets.items():
        block = correlations["by_averaging"][inputs.primary_averaging]["js_vs_cosine"][label]
        for layer in cs.layers:
            column = cosine_column(label, layer)
            frame = pairs[["pair", js_col, column]].dropna().rename(columns={js_col: "js", column: "cosine"})
            prefix = f"{layer}" if len(inputs.cosine_sets) == 1 else f"{label} {layer}"
            panels.append(
                charts.scatter(
                    frame,
                    x="cosine",
                    y="js",
                    title=_design_title(prefix, block[layer]),
                    tooltip=["pair", "js", "cosine"],
                )
            )
    if panels:
        built["js_vs_cosine"] = alt.hconcat(*panels).properties(
            title=f"JS ({inputs.primary_averaging}) vs hidden-state cosine, per layer"
        )
    uncertainty = pair_js_uncertainty_figure(inputs, correlations)
    if uncertainty is not None:
        built["pair_js_uncertainty"] = uncertainty
    hero = hero_figure(inputs, correlations)
    if hero is not None:
        built["js_vs_leakage"] = hero
    if baseline is not None and (within := baseline_figure(baseline)) is not None:
        built["pair_js_vs_within_persona"] = within
    return built
