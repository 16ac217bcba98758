"""Figures of the per-token pass: correlations against depth (logit lens) and the position profile.

- `lens_by_depth`: against the layer, Spearman ρ with leakage of cosine and of lens JS, side by side, each
  with its crossed-bootstrap 95% CI (labelled liberal, as everywhere); without leakage data, ρ(lens JS,
  output JS) and ρ(lens JS, cosine) against depth, titled so.
- `position_profile`: mean JS per response-position bucket with question-bootstrap 95% CIs, for the most
  and least divergent pairs.
No dagster import.
"""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd


def _ci(section: dict[str, Any] | None) -> tuple[float | None, float | None]:
    ci = ((section or {}).get("crossed_bootstrap") or {}).get("spearman_ci95") or [None, None]
    return ci[0], ci[1]


def lens_by_depth(layer_divergences: dict[str, Any]) -> alt.LayerChart:
    report = layer_divergences["report"]
    rows = []
    with_leakage = report["leakage"]["available"]
    for entry in report["by_layer"].values():
        if with_leakage:
            series = (
                ("lens JS vs leakage", entry.get("js_vs_leakage")),
                ("cosine vs leakage", entry.get("cosine_vs_leakage")),
            )
        else:
            series = (
                ("lens JS vs output JS", entry.get("js_vs_output")),
                ("lens JS vs cosine", entry.get("js_vs_cosine")),
            )
        for label, section in series:
            rho = (section or {}).get("spearman_rho")
            if rho is None:
                continue
            lo, hi = _ci(section) if with_leakage else (None, None)
            rows.append({"layer": entry["layer"], "predictor": label, "rho": rho, "lo": lo, "hi": hi})
    frame = pd.DataFrame(rows, columns=["layer", "predictor", "rho", "lo", "hi"])
    output = report["output_layer"]
    title = (
        "Leakage correlation through depth: cosine and logit-lens JS"
        if with_leakage
        else "No leakage data: lens JS against the output's and against cosine, through depth"
    )
    subtitle = (
        f"Spearman ρ per layer (layer {output} = the output); bars: persona-bootstrap 95% CI (liberal); "
        f"{layer_divergences['averaging']}"
        if with_leakage
        else f"Spearman ρ over unordered pairs per layer (layer {output} = the output)"
    )
    base = alt.Chart(frame, title=alt.Title(title, subtitle=subtitle))
    x = alt.X("layer:Q", title="decoder layer", scale=alt.Scale(zero=False), axis=alt.Axis(format="d", tickMinStep=1))
    color = alt.Color("predictor:N", title=None, legend=alt.Legend(labelLimit=400))
    lines = base.mark_line(point=True).encode(
        x=x,
        y=alt.Y("rho:Q", title="Spearman ρ", scale=alt.Scale(domain=[-1, 1])),
        color=color,
        tooltip=["layer", "predictor", alt.Tooltip("rho:Q", format=".3f")],
    )
    bars = base.mark_rule(opacity=0.6).encode(x=x, y="lo:Q", y2="hi:Q", color=color)
    zero = alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(color="gray", strokeDash=[3, 3]).encode(y="y:Q")
    return alt.layer(zero, bars, lines).properties(width=380, height=240)


def position_profile(divergence_profiles: dict[str, Any]) -> alt.LayerChart | None:
    pairs = pd.DataFrame(divergence_profiles["pairs"])
    if pairs.empty:
        return None
    extremes = divergence_profiles["extremes"]
    chosen = {
        tuple(extremes["most_divergent"]): "most divergent",
        tuple(extremes["least_divergent"]): "least divergent",
    }
    pairs["key"] = list(zip(pairs["persona_a"], pairs["persona_b"]))
    frame = pairs[pairs["key"].isin(list(chosen))].copy()
    frame["pair"] = [f"{chosen[k]}: {a} / {b}" for k, a, b in zip(frame["key"], frame["persona_a"], frame["persona_b"])]
    frame["lo"] = [max(ci[0], 0.0) if ci and ci[0] is not None else None for ci in frame["ci95"]]
    frame["hi"] = [ci[1] if ci else None for ci in frame["ci95"]]
    frame = frame.drop(columns=["key", "ci95", "ci95_percentile"])
    order = [b for b in divergence_profiles["buckets"] if b in set(frame["bucket"])]
    base = alt.Chart(
        frame,
        title=alt.Title(
            "JS by response position: the most and least divergent pairs",
            subtitle=f"mean over questions ({divergence_profiles['averaging']}); "
            "bars: question-bootstrap 95% CI (clipped at 0)",
        ),
    )
    x = alt.X("bucket:O", sort=order, title="response positions (tokens)")
    color = alt.Color("pair:N", title=None, legend=alt.Legend(labelLimit=400, orient="bottom", direction="vertical"))
    lines = base.mark_line(point=True).encode(
        x=x,
        y=alt.Y("js:Q", title="JS (nats)"),
        color=color,
        tooltip=["pair", "bucket", alt.Tooltip("js:Q", format=".4g"), "n_positions"],
    )
    bars = base.mark_rule(opacity=0.6).encode(x=x, y="lo:Q", y2="hi:Q", color=color)
    return alt.layer(bars, lines).properties(width=320, height=220)


def depth_figures(layer_divergences: dict[str, Any] | None, divergence_profiles: dict[str, Any] | None) -> dict:
    """The figures of whatever of the two assets is given (stem → chart)."""
    built: dict[str, Any] = {}
    if layer_divergences is not None:
        built["lens_leakage_by_depth"] = lens_by_depth(layer_divergences)
    if divergence_profiles is not None and (chart := position_profile(divergence_profiles)) is not None:
        built["position_profile"] = chart
    return built
