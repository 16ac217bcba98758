"""The within-persona baseline's figure: each pair's JS against the within-persona level of its two personas.

Left: one point per pair, x = level(A, B) = (within(A) + within(B)) / 2, y = JS(A, B), the line y = x
(a pair no more different than rewording a prompt), coloured by the call against question-level
uncertainty. Right: each persona's within-persona JS with its 95% question-bootstrap CI.
No dagster import.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import altair as alt
import pandas as pd

from persona_assets.analysis import charts

ABOVE, WITHIN, BELOW = "above the level", "within the uncertainty", "below the level"


def _call(row: Mapping[str, Any]) -> str:
    return ABOVE if row["exceeds_within"] else BELOW if row["below_within"] else WITHIN


def baseline_figure(baseline: Mapping[str, Any]) -> alt.HConcatChart | None:
    """None when no baseline was measured or no pair could be compared."""
    if not baseline.get("measured") or not baseline.get("pairs"):
        return None
    pairs = pd.DataFrame(baseline["pairs"])
    pairs["pair"] = pairs["persona_a"] + " / " + pairs["persona_b"]
    pairs["call"] = [_call(r) for r in baseline["pairs"]]
    high = float(max(pairs["js"].max(), pairs["within_level"].max()))
    diagonal = pd.DataFrame({"x": [0.0, high], "y": [0.0, high]})
    line = alt.Chart(diagonal).mark_line(color="grey", strokeDash=[4, 3]).encode(x="x:Q", y="y:Q")
    points = (
        alt.Chart(pairs)
        .mark_circle(size=60, opacity=0.85)
        .encode(
            x=alt.X("within_level:Q", title="within-persona level of the pair (nats)"),
            y=alt.Y("js:Q", title="pair JS (nats)"),
            color=alt.Color("call:N", scale=alt.Scale(domain=[ABOVE, WITHIN, BELOW]), title=None),
            tooltip=[
                "pair",
                alt.Tooltip("js:Q", format=".4g"),
                alt.Tooltip("within_level:Q", format=".4g"),
                alt.Tooltip("ratio:Q", format=".3g"),
                "call",
            ],
        )
    )
    share = baseline.get("share_exceeding")
    subtitle = [
        "level = mean of the two personas' within-persona JS",
        "(each: its prompt vs its paraphrases, on its own responses); dashed: JS = level",
        (
            f"{baseline['n_exceeding']}/{baseline['n_pairs']} pairs above the level beyond question-level uncertainty"
            if share is not None
            else baseline.get("note", "")
        ),
    ]
    left = alt.layer(line, points).properties(
        width=300, height=260, title=alt.Title("Pair JS vs the within-persona level", subtitle=subtitle)
    )
    personas = pd.DataFrame(
        [
            {
                "persona": p["persona"],
                "within_js": p["within_js"],
                "ci_lo": p["ci95"][0] if p["ci95"][0] is not None else p["within_js"],
                "ci_hi": p["ci95"][1] if p["ci95"][1] is not None else p["within_js"],
            }
            for p in baseline["personas"]
        ]
    )
    right = charts.ranked_intervals(
        personas,
        label="persona",
        value="within_js",
        lo="ci_lo",
        hi="ci_hi",
        title="Within-persona JS per persona",
        subtitle=f"95% CI over the {baseline['n_questions']} questions"
        + ("" if baseline.get("noise_floor_js_nats") is None else "; dashed: noise floor"),
        reference=baseline.get("noise_floor_js_nats"),
        reference_label="noise floor",
    )
    return alt.hconcat(left, right).resolve_scale(color="independent")
