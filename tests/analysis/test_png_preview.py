"""The UI previews of the figures: each saved PNG halved, pixel for pixel the mean of its 2 × 2 blocks."""

from __future__ import annotations

import base64
import io

import altair as alt
import numpy as np
import pandas as pd
from PIL import Image

from persona_assets.analysis import charts


def decoded(markdown: str) -> Image.Image:
    prefix = "![preview](data:image/png;base64,"
    assert markdown.startswith(prefix) and markdown.endswith(")")
    return Image.open(io.BytesIO(base64.b64decode(markdown[len(prefix) : -1])))


def test_a_preview_is_the_mean_of_each_two_by_two_block(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(6, 8, 4), dtype=np.uint8)
    pixels[..., 3] = 255  # opaque: the mean of colours is then the mean of each channel
    Image.fromarray(pixels, "RGBA").save(tmp_path / "figure.png")
    preview = np.asarray(decoded(charts.png_preview(tmp_path / "figure.png")))
    blocks = pixels.astype(float).reshape(3, 2, 4, 2, 4).mean(axis=(1, 3))
    assert preview.shape == (3, 4, 4)
    assert np.abs(preview - blocks).max() <= 0.5 + 1e-9  # rounded to the nearest integer


def test_save_figures_writes_each_chart_and_previews_it_at_half_its_size(tmp_path):
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0.3, 0.1, 0.2]})
    built = {
        "points": alt.Chart(frame).mark_point().encode(x="x:Q", y="y:Q").properties(width=120, height=80),
        "bars": alt.Chart(frame).mark_bar().encode(x="x:O", y="y:Q").properties(width=90, height=60),
    }
    files, previews = charts.save_figures(built, tmp_path)
    assert files == {stem: {"png": f"{stem}.png", "html": f"{stem}.html"} for stem in built}
    for stem in built:
        width, height = Image.open(tmp_path / f"{stem}.png").size
        assert decoded(previews[stem]).size == (width // 2, height // 2)
        assert "vegaEmbed" in (tmp_path / f"{stem}.html").read_text()
