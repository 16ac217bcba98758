"""Position buckets, lens tables and vocabulary terms of the per-token pass: known answers and properties."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from persona_assets.measure.scoring_plan import ResponseJob
from persona_assets.measure.token_profiles import (
    bucket_labels,
    bucket_pair_question_table,
    bucket_sum_gaps,
    bucket_table,
    check_bucket_edges,
    lens_matrices,
    lens_response_table,
    position_buckets,
    term_sum_gaps,
    vocabulary_table,
)

NAMES = ["a", "b"]


def test_default_bucket_labels():
    assert bucket_labels([1, 5, 17, 65, 257]) == ["1–4", "5–16", "17–64", "65–256", "257+"]
    assert bucket_labels([1, 2, 3]) == ["1", "2", "3+"]


@pytest.mark.parametrize("edges", [[], [0, 4], [1, 4, 4], [2, 5], [1, 7, 3]])
def test_bad_bucket_edges_are_refused(edges):
    with pytest.raises(ValueError, match="start at 1"):
        check_bucket_edges(edges)


def test_position_buckets_known_answer():
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert position_buckets(values, [1, 5, 17]) == [("1–4", 4, 2.5), ("5–16", 2, 5.5)]
    # A response past the last edge: the open bucket holds the rest.
    assert position_buckets(values, [1, 3]) == [("1–2", 2, 1.5), ("3+", 4, 4.5)]


@settings(max_examples=80, deadline=None)
@given(
    values=st.lists(st.floats(0.0, math.log(2)), min_size=1, max_size=300),
    gaps=st.lists(st.integers(1, 40), min_size=0, max_size=6),
)
def test_buckets_sum_back_to_the_mean_weighted_by_token_counts(values, gaps):
    edges = list(np.cumsum([1, *gaps]))
    buckets = position_buckets(values, edges)
    assert sum(n for _, n, _ in buckets) == len(values)
    weighted = sum(n * mean for _, n, mean in buckets) / len(values)
    assert weighted == pytest.approx(float(np.mean(values)), rel=1e-12, abs=1e-15)


def _job(generator: int, question: int, n: int) -> ResponseJob:
    other = 1 - generator
    return ResponseJob(
        key=f"{generator}{question}",
        response_ids=list(range(n)),
        prompts={0: [1, question], 1: [2, question]},
        pairs=[(generator, other)],
        generator=generator,
        question_index=question,
    )


def _record(js_tokens, *, kl_ab_sum, kl_ba_sum, ab, ba):
    mean = float(np.mean(js_tokens))
    return {
        "lens": {"1": {"js": 2 * mean, "kl_ab": 0.1, "kl_ba": 0.2}, "2": {"js": mean, "kl_ab": 0.3, "kl_ba": 0.4}},
        "js_tokens": list(js_tokens),
        "kl_ab_sum": kl_ab_sum,
        "kl_ba_sum": kl_ba_sum,
        "terms_ab": {"ids": list(ab), "values": list(ab.values()), "sum": kl_ab_sum},
        "terms_ba": {"ids": list(ba), "values": list(ba.values()), "sum": kl_ba_sum},
    }


@pytest.fixture
def run():
    """Two personas, one question: a's response (pair (a, b)) and b's response (pair (b, a))."""
    responses = [
        {"persona": "a", "question_index": 0, "n_tokens": 6},
        {"persona": "b", "question_index": 0, "n_tokens": 2},
    ]
    jobs = [_job(0, 0, 6), _job(1, 0, 2)]
    records = [
        [_record([0.1, 0.1, 0.1, 0.1, 0.4, 0.4], kl_ab_sum=1.0, kl_ba_sum=2.0, ab={7: 0.6, 8: 0.3}, ba={9: 1.5})],
        # On b's response the pair is (b, a): its KL(b‖a) terms are KL(A‖B)'s of the pair (a, b) the other way round.
        [_record([0.3, 0.5], kl_ab_sum=3.0, kl_ba_sum=0.5, ab={9: 2.0, 8: 0.5}, ba={7: 0.25})],
    ]
    return responses, jobs, records


def test_lens_matrices_average_like_the_output(run):
    table = lens_response_table(*run, NAMES)
    matrices = lens_matrices(table, NAMES, "pair_own")
    # Pair (a, b) at layer 2: the mean of the two responses' means (0.2 and 0.4), each response counted once.
    assert matrices[2].js[0, 1] == pytest.approx(0.3) and matrices[1].js[0, 1] == pytest.approx(0.6)
    # KL(a‖b): a's response gives kl_ab, b's response (scored as (b, a)) gives its kl_ba.
    assert matrices[2].kl[0, 1] == pytest.approx((0.3 + 0.4) / 2)


def test_bucket_tables(run):
    table = bucket_table(*run, NAMES, [1, 5])
    assert list(table["bucket"]) == ["1–4", "5+", "1–4"]
    assert np.all(bucket_sum_gaps(table) < 1e-15)
    per_question = bucket_pair_question_table(table, NAMES, "pair_own")
    first = per_question[per_question["bucket"] == "1–4"].iloc[0]
    # Each response's bucket mean, then their mean: (0.1 + 0.4) / 2, not the token-weighted 1.2 / 6.
    assert (first["persona_a"], first["persona_b"]) == ("a", "b")
    assert first["js"] == pytest.approx(0.25) and first["n_positions"] == 6 and first["n_responses"] == 2
    # A bucket that loses a position shows as an unbounded gap.
    broken = table.copy()
    broken.loc[0, "n_positions"] = 3
    assert np.isinf(bucket_sum_gaps(broken)).any()


def test_vocabulary_terms_are_oriented_and_summed_over_the_pairs_responses(run):
    rows, gaps = vocabulary_table(*run, NAMES, "pair_own", top_k=5)
    ab = rows[rows["direction"] == "A‖B"].set_index("token_id")
    # KL(a‖b): a's response terms {7: .6, 8: .3} plus b's response KL(b‖a) terms {7: .25}; total 1.0 + 0.5.
    assert ab.loc[7, "term"] == pytest.approx(0.85) and ab.loc[8, "term"] == pytest.approx(0.3)
    assert ab.loc[7, "share"] == pytest.approx(0.85 / 1.5)
    assert list(ab["rank"]) == [1, 2]
    ba = rows[rows["direction"] == "B‖A"].set_index("token_id")
    assert ba.loc[9, "term"] == pytest.approx(3.5) and ba.loc[9, "total_kl"] == pytest.approx(5.0)
    absolute, kl = term_sum_gaps(gaps)
    assert np.all(absolute == 0) and len(kl) == 4


def test_all_responses_uses_every_response():
    responses = [{"persona": "c", "question_index": 0, "n_tokens": 2}]
    job = ResponseJob(key="c", response_ids=[1, 2], prompts={0: [1], 1: [2], 2: [3]}, pairs=[(0, 1)], generator=2)
    record = _record([0.2, 0.2], kl_ab_sum=1.0, kl_ba_sum=1.0, ab={5: 0.5}, ba={6: 0.5})
    names = ["a", "b", "c"]
    assert len(vocabulary_table(responses, [job], [[record]], names, "all_responses", 3)[0]) == 2
    assert len(vocabulary_table(responses, [job], [[record]], names, "pair_own", 3)[0]) == 0
    table = bucket_table(responses, [job], [[record]], names, [1])
    assert len(bucket_pair_question_table(table, names, "pair_own")) == 0
    assert isinstance(bucket_pair_question_table(table, names, "all_responses"), pd.DataFrame)
