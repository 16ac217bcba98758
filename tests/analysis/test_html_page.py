"""The figures' HTML page is altair's own inline page byte for byte, with the Vega bundle built once and then read
from the cache directory."""

from __future__ import annotations

import io

import altair as alt
import pandas as pd

from persona_assets.analysis.html_page import chart_spec, inline_html, vega_bundle


def _chart() -> alt.Chart:
    frame = pd.DataFrame({"x": [0.1, 0.2, 0.5], "y": [1, 3, 2], "pair": ["a|b", "a|c", "b|c"]})
    return alt.Chart(frame).mark_point().encode(x="x", y="y", tooltip=["pair"]).properties(title="JS vs leakage")


def test_page_is_altairs_inline_page_and_the_bundle_is_read_back(tmp_path):
    chart = _chart()
    altairs = io.StringIO()
    chart.save(altairs, format="html", inline=True)
    assert not list(tmp_path.rglob("*.js"))
    ours = inline_html(chart_spec(chart), cache_dir=tmp_path)
    assert ours == altairs.getvalue()
    [cached] = list((tmp_path / "vega-bundle").glob("vl-convert-*.js"))
    assert "vegaEmbed" in cached.read_text()
    # Read back, not rebuilt: a marker written into the cached file shows up in the next page.
    cached.write_text(cached.read_text() + "\n// cached copy")
    assert vega_bundle(tmp_path).endswith("// cached copy")
    assert "// cached copy" in inline_html(chart_spec(chart), cache_dir=tmp_path)


def test_an_unwritable_cache_still_gives_the_page(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    spec = chart_spec(_chart())
    assert inline_html(spec, cache_dir=blocked) == inline_html(spec, cache_dir=tmp_path)
