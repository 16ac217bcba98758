"""Altair charts of the results, saved as PNG (via vl-convert, `drawings`) and interactive HTML."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd

from persona_assets.analysis.drawings import png_drawing
from persona_assets.analysis.html_page import chart_spec, inline_html
from persona_assets.runs.storage import atomic_write_bytes, atomic_write_text


def heatmap(
    matrix: np.ndarray, persona_names: list[str], *, title: str, value_label: str, diverging: bool = False
) -> alt.Chart:
    n = len(persona_names)
    frame = pd.DataFrame(
        {
            "row": np.repeat(persona_names, n),
            "column": np.tile(persona_names, n),
            value_label: np.asarray(matrix, dtype=float).ravel(),
        }
    )
    if diverging:
        bound = float(np.nanmax(np.abs(matrix))) or 1.0
        scale = alt.Scale(scheme="redblue", domain=[-bound, bound], reverse=True)
    else:
        scale = alt.Scale(scheme="viridis")
    return (
        alt.Chart(frame, title=title)
        .mark_rect()
        .encode(
            x=alt.X("column:N", sort=persona_names, title=None),
            y=alt.Y("row:N", sort=persona_names, title=None),
            color=alt.Color(f"{value_label}:Q", scale=scale),
            tooltip=["row", "column", alt.Tooltip(f"{value_label}:Q", format=".4g")],
        )
        .properties(width=28 * n, height=28 * n)
    )


def scatter(
    frame: pd.DataFrame, *, x: str, y: str, title: str, color: str | None = None, tooltip: list[str] | None = None
) -> alt.Chart:
    encoding = {
        "x": alt.X(f"{x}:Q", scale=alt.Scale(zero=False)),
        "y": alt.Y(f"{y}:Q", scale=alt.Scale(zero=False)),
        "tooltip": tooltip or list(frame.columns),
    }
    if color:
        encoding["color"] = alt.Color(f"{color}:N")
    return (
        alt.Chart(frame, title=title)
        .mark_circle(size=60, opacity=0.8)
        .encode(**encoding)
        .properties(width=260, height=220)
    )


def scatter_with_x_intervals(
    frame: pd.DataFrame,
    *,
    x: str,
    lo: str,
    hi: str,
    y: str,
    title: str,
    color: str | None = None,
    tooltip: list[str] | None = None,
    subtitle: str | list[str] | None = None,
) -> alt.LayerChart:
    """`scatter` of (x, y) with a horizontal error bar [lo, hi] on every point (e.g. a 95% CI of x)."""
    base = alt.Chart(frame, title=alt.Title(title, subtitle=subtitle) if subtitle else title)
    color_enc = {"color": alt.Color(f"{color}:N")} if color else {}
    bars = base.mark_rule(opacity=0.5).encode(
        x=alt.X(f"{lo}:Q", scale=alt.Scale(zero=False), title=x),
        x2=f"{hi}:Q",
        y=alt.Y(f"{y}:Q", scale=alt.Scale(zero=False)),
        **color_enc,
    )
    points = base.mark_circle(size=60, opacity=0.85).encode(
        x=alt.X(f"{x}:Q", scale=alt.Scale(zero=False)),
        y=alt.Y(f"{y}:Q", scale=alt.Scale(zero=False)),
        tooltip=tooltip or list(frame.columns),
        **color_enc,
    )
    return alt.layer(bars, points).properties(width=260, height=220)


def ranked_intervals(
    frame: pd.DataFrame,
    *,
    label: str,
    value: str,
    lo: str,
    hi: str,
    title: str,
    subtitle: str | list[str] | None = None,
    reference: float | None = None,
    reference_label: str = "",
) -> alt.LayerChart:
    """One row per item, sorted by value: the point and its [lo, hi] interval; optional vertical reference line."""
    order = frame.sort_values(value)[label].tolist()
    base = alt.Chart(frame, title=alt.Title(title, subtitle=subtitle) if subtitle else title)
    y = alt.Y(f"{label}:N", sort=order, title=None, axis=alt.Axis(labelFontSize=8))
    bars = base.mark_rule().encode(x=alt.X(f"{lo}:Q", title=value), x2=f"{hi}:Q", y=y)
    points = base.mark_point(filled=True, size=30).encode(
        x=f"{value}:Q",
        y=y,
        tooltip=[
            label,
            alt.Tooltip(f"{value}:Q", format=".4g"),
            alt.Tooltip(f"{lo}:Q", format=".4g"),
            alt.Tooltip(f"{hi}:Q", format=".4g"),
        ],
    )
    layers = [bars, points]
    if reference is not None:
        rule = pd.DataFrame({"x": [reference], "what": [reference_label]})
        layers.append(alt.Chart(rule).mark_rule(color="firebrick", strokeDash=[4, 3]).encode(x="x:Q", tooltip=["what"]))
    return alt.layer(*layers).properties(width=360, height=max(200, 11 * len(frame)))


def save_chart(chart: alt.Chart, directory: Path, stem: str, *, cache_dir: Path | None = None) -> dict[str, Path]:
    """Write <stem>.png and <stem>.html; return their paths.

    Both are rendered in memory first and then replace the old files atomically, so a failure
    while drawing leaves the previous figure whole. A spec drawn before is read from the cache
    (`persona_assets.analysis.drawings`; `cache_dir`, by default ~/.cache/persona-divergence).
    """
    spec = chart_spec(chart)  # built and validated once for both files
    png = directory / f"{stem}.png"
    html = directory / f"{stem}.html"
    png_bytes = png_drawing(spec, scale=2, cache_dir=cache_dir)
    page = inline_html(spec, cache_dir=cache_dir)  # self-contained: opens offline, no CDN
    atomic_write_bytes(png, png_bytes)
    atomic_write_text(html, page)
    return {"png": png, "html": html}


def png_preview(png: Path, *, shrink: int = 2) -> str:
    """A saved PNG shrunk `shrink` times (each pixel the mean of a shrink × shrink block), as base64 Markdown for
    the UI's materialization metadata. The figure's PNG is drawn at scale 2, so the default preview is the size it
    was designed at; shrinking the drawn image costs tens of milliseconds where drawing it again cost a few tenths
    of a second per chart."""
    from PIL import Image

    with Image.open(png) as image:
        small = image.reduce(shrink)
    data = io.BytesIO()
    small.save(data, format="PNG")
    return "![preview](data:image/png;base64," + base64.b64encode(data.getvalue()).decode() + ")"


def save_figures(
    built: dict[str, alt.TopLevelMixin], directory: Path, *, cache_dir: Path | None = None
) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Save every chart of a run (`save_chart`); return ({stem: {"png": file name, "html": file name}},
    {stem: its `png_preview`}). The names are relative to `directory`, so they are the same from run to run."""
    saved = {stem: save_chart(chart, directory, stem, cache_dir=cache_dir) for stem, chart in built.items()}
    files = {stem: {kind: path.name for kind, path in paths.items()} for stem, paths in saved.items()}
    return files, {stem: png_preview(paths["png"]) for stem, paths in saved.items()}
