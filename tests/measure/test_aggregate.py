"""Pair aggregation: pair-own vs all-responses averaging on hand-built per-response rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from persona_assets.measure.aggregate import pair_matrices, pair_question_table

NAMES = ["a", "b", "c"]


def rows_for(values: dict[tuple[str, str, str, int], tuple[float, float, float]]) -> pd.DataFrame:
    """values[(generator, persona_a, persona_b, question)] = (js, kl_ab, kl_ba)."""
    return pd.DataFrame(
        [
            {
                "generator": g,
                "question_index": q,
                "persona_a": a,
                "persona_b": b,
                "js": v[0],
                "kl_ab": v[1],
                "kl_ba": v[2],
                "n_tokens": 5,
            }
            for (g, a, b, q), v in values.items()
        ]
    )


def all_pair_rows(rng: np.random.Generator, n_questions: int = 2) -> pd.DataFrame:
    values = {}
    for g in NAMES:
        for q in range(n_questions):
            for i, a in enumerate(NAMES):
                for b in NAMES[i + 1 :]:
                    values[(g, a, b, q)] = tuple(rng.uniform(0.01, 0.5, size=3))
    return rows_for(values)


def test_pair_own_uses_only_the_pairs_own_responses():
    rows = rows_for(
        {
            ("a", "a", "b", 0): (0.10, 1.0, 2.0),
            ("b", "b", "a", 0): (0.30, 4.0, 3.0),  # oriented b→a: kl_ab = KL(b‖a)
            ("c", "a", "b", 0): (9.00, 9.0, 9.0),  # another persona's response: ignored
            ("a", "a", "c", 0): (0.2, 0.2, 0.2),
            ("c", "c", "a", 0): (0.2, 0.2, 0.2),
            ("b", "b", "c", 0): (0.4, 0.4, 0.4),
            ("c", "c", "b", 0): (0.4, 0.4, 0.4),
        }
    )
    m = pair_matrices(rows, NAMES, "pair_own")
    assert m.js[0, 1] == pytest.approx((0.10 + 0.30) / 2)
    # KL(a‖b): 1.0 on a's response, 3.0 on b's response (its kl_ba) → mean 2.0
    assert m.kl[0, 1] == pytest.approx(2.0)
    assert m.kl[1, 0] == pytest.approx((2.0 + 4.0) / 2)
    assert m.kl_signed_asym[0, 1] == pytest.approx(2.0 - 3.0)
    assert m.kl_asym[1, 0] == pytest.approx(1.0)
    assert m.kl_sym[0, 1] == pytest.approx(2.5)


def test_all_responses_averages_every_generator():
    rows = all_pair_rows(np.random.default_rng(0))
    m = pair_matrices(rows, NAMES, "all_responses")
    expected = rows[(rows.persona_a == "a") & (rows.persona_b == "c")].groupby("question_index")["js"].mean().mean()
    assert m.js[0, 2] == pytest.approx(expected)
    assert np.allclose(m.js, m.js.T) and np.all(np.diag(m.js) == 0) and np.all(np.diag(m.kl) == 0)


def test_questions_weigh_equally():
    values = {}
    for q, js in enumerate([0.1, 0.5]):
        for g, a, b in [
            ("a", "a", "b"),
            ("b", "a", "b"),
            ("a", "a", "c"),
            ("c", "a", "c"),
            ("b", "b", "c"),
            ("c", "b", "c"),
        ]:
            values[(g, a, b, q)] = (js, js, js)
    table = pair_question_table(rows_for(values), NAMES, "pair_own")
    assert len(table) == 3 * 2
    assert pair_matrices(rows_for(values), NAMES, "pair_own").js[0, 1] == pytest.approx(0.3)


def test_missing_pair_is_an_error():
    rows = rows_for({("a", "a", "b", 0): (0.1, 0.1, 0.1), ("b", "a", "b", 0): (0.1, 0.1, 0.1)})
    with pytest.raises(ValueError, match="no divergence rows"):
        pair_matrices(rows, NAMES, "pair_own")


def test_unknown_averaging_is_rejected():
    with pytest.raises(ValueError, match="averaging"):
        pair_matrices(all_pair_rows(np.random.default_rng(1)), NAMES, "median")
