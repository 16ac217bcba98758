"""Each spec's PNG is drawn by vl-convert once and then read back from the cache, byte for byte the same."""

from __future__ import annotations

import os

import altair as alt
import pandas as pd
import pytest
import vl_convert as vlc

from persona_assets.analysis import charts, drawings
from persona_assets.analysis.html_page import chart_spec


def spec(title: str = "points") -> dict:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0.3, 0.1, 0.2]})
    return chart_spec(alt.Chart(frame, title=title).mark_point().encode(x="x:Q", y="y:Q").properties(width=60))


@pytest.fixture
def drawn(monkeypatch) -> list[dict]:
    """The specs vl-convert is asked to draw (it still draws them)."""
    calls: list[dict] = []
    real = vlc.vegalite_to_png

    def counting(spec, *args, **kwargs):
        calls.append(spec)
        return real(spec, *args, **kwargs)

    monkeypatch.setattr(vlc, "vegalite_to_png", counting)
    return calls


def test_a_spec_drawn_before_is_read_back_with_the_same_bytes(tmp_path, drawn):
    first = drawings.png_drawing(spec(), scale=2, cache_dir=tmp_path)
    again = drawings.png_drawing(spec(), scale=2, cache_dir=tmp_path)
    assert len(drawn) == 1
    assert again == first
    assert first == vlc.vegalite_to_png(spec(), scale=2)  # what vl-convert draws, not something else
    assert drawings.is_whole_png(first)
    assert [p.name for p in drawings.drawings_dir(tmp_path).iterdir()] == [f"{drawings.drawing_key(spec(), 2)}.png"]


def test_another_spec_scale_or_vl_convert_is_drawn_anew(tmp_path, drawn, monkeypatch):
    drawings.png_drawing(spec(), scale=2, cache_dir=tmp_path)
    other = drawings.png_drawing(spec("other title"), scale=2, cache_dir=tmp_path)
    smaller = drawings.png_drawing(spec(), scale=1, cache_dir=tmp_path)
    assert len(drawn) == 3 and other != smaller
    keys = {drawings.drawing_key(spec(), 2), drawings.drawing_key(spec("other title"), 2)}
    keys.add(drawings.drawing_key(spec(), 1))
    monkeypatch.setattr(vlc, "__version__", "0.0.0")
    keys.add(drawings.drawing_key(spec(), 2))
    assert len(keys) == 4


def test_the_key_does_not_depend_on_the_order_of_the_specs_keys():
    given = spec()
    reordered = dict(reversed(list(given.items())))
    assert list(reordered) != list(given)
    assert drawings.drawing_key(reordered, 2) == drawings.drawing_key(given, 2)


def test_a_torn_entry_is_drawn_again_and_replaced(tmp_path, drawn):
    whole = drawings.png_drawing(spec(), scale=2, cache_dir=tmp_path)
    entry = drawings.drawings_dir(tmp_path) / f"{drawings.drawing_key(spec(), 2)}.png"
    entry.write_bytes(whole[: len(whole) // 2])  # a write cut short
    assert drawings.png_drawing(spec(), scale=2, cache_dir=tmp_path) == whole
    assert len(drawn) == 2
    assert entry.read_bytes() == whole


def test_the_folder_keeps_the_most_recently_used_drawings(tmp_path, drawn, monkeypatch):
    monkeypatch.setattr(drawings, "KEPT_DRAWINGS", 2)
    folder = drawings.drawings_dir(tmp_path)
    first = drawings.png_drawing(spec("a"), scale=1, cache_dir=tmp_path)
    drawings.png_drawing(spec("b"), scale=1, cache_dir=tmp_path)
    for entry, when in zip(sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime_ns), (1, 2)):
        os.utime(entry, (when, when))  # a before b, whatever the clock's resolution
    assert drawings.png_drawing(spec("a"), scale=1, cache_dir=tmp_path) == first  # read back: now the newest
    drawings.png_drawing(spec("c"), scale=1, cache_dir=tmp_path)
    kept = {p.name for p in folder.iterdir()}
    assert kept == {f"{drawings.drawing_key(spec(name), 1)}.png" for name in ("a", "c")}
    assert len(drawn) == 3


def test_a_cache_that_cannot_be_written_costs_only_the_drawing(tmp_path, drawn):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    first = drawings.png_drawing(spec(), scale=2, cache_dir=blocked)
    assert drawings.is_whole_png(first)
    assert drawings.png_drawing(spec(), scale=2, cache_dir=blocked) == first
    assert len(drawn) == 2


def test_saved_figures_are_the_same_drawn_or_read_back(tmp_path, drawn):
    chart = alt.Chart(pd.DataFrame({"x": [1, 2], "y": [2, 1]})).mark_bar().encode(x="x:O", y="y:Q")
    cache = tmp_path / "cache"
    files, previews = charts.save_figures({"bars": chart}, tmp_path / "run1", cache_dir=cache)
    again = charts.save_figures({"bars": chart}, tmp_path / "run2", cache_dir=cache)
    assert len(drawn) == 1
    assert again == (files, previews)
    for name in ("bars.png", "bars.html"):
        assert (tmp_path / "run2" / name).read_bytes() == (tmp_path / "run1" / name).read_bytes()
