"""Which positions each scoring rule scores: known answers on truncated and complete responses."""

from __future__ import annotations

import pytest

from persona_assets.runs.errors import InputError
from persona_assets.measure.scoring_rule import (
    GENERATED,
    ORIGINAL_TEMPLATE,
    original_template_split,
    round_trips,
    scored_response,
    template_closing_ids,
)

EOT, NEWLINE = 2, 198
CLOSING = [EOT, NEWLINE]


def test_truncated_response_gets_the_closing_tokens_only_under_the_original_rule() -> None:
    ours = scored_response([5, 6, 7], hit_max_new_tokens=True, closing_ids=CLOSING)
    assert (ours.ids, ours.generated, ours.rule) == ([5, 6, 7], [True] * 3, GENERATED)
    original = scored_response([5, 6, 7], hit_max_new_tokens=True, closing_ids=CLOSING, rule=ORIGINAL_TEMPLATE)
    assert original.ids == [5, 6, 7, EOT, NEWLINE]
    assert original.generated == [True, True, True, False, False] and original.n_appended == 2


def test_complete_response_keeps_its_own_end_of_turn_and_gains_the_newline() -> None:
    ours = scored_response([5, 6, EOT], hit_max_new_tokens=False, closing_ids=CLOSING)
    assert ours.ids == [5, 6, EOT] and ours.n_appended == 0
    original = scored_response([5, 6, EOT], hit_max_new_tokens=False, closing_ids=CLOSING, rule=ORIGINAL_TEMPLATE)
    assert original.ids == [5, 6, EOT, NEWLINE] and original.generated == [True, True, True, False]
    # End-of-turn exactly at the limit: the model emitted it, so it is its own position.
    at_limit = scored_response([5, EOT], hit_max_new_tokens=True, closing_ids=CLOSING, rule=ORIGINAL_TEMPLATE)
    assert at_limit.ids == [5, EOT, NEWLINE] and at_limit.generated == [True, True, False]


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(InputError, match="end-of-turn"):
        scored_response([5, 6], hit_max_new_tokens=False, closing_ids=CLOSING)
    with pytest.raises(InputError, match="scoring rule"):
        scored_response([5], hit_max_new_tokens=True, closing_ids=CLOSING, rule="both")
    with pytest.raises(InputError, match="empty"):
        scored_response([], hit_max_new_tokens=True, closing_ids=CLOSING)


def test_template_closing_ids_is_the_suffix_after_the_content() -> None:
    assert template_closing_ids([1, 9, 9, 5, 6, EOT, NEWLINE], [1, 9, 9], [5, 6]) == CLOSING
    with pytest.raises(InputError, match="prompt"):
        template_closing_ids([1, 8, 5, 6, EOT], [1, 9], [5, 6])
    with pytest.raises(InputError, match="content"):
        template_closing_ids([1, 9, 5, 7, EOT], [1, 9], [5, 6])


def test_the_original_split_is_by_the_prompt_length_and_refuses_what_it_skipped() -> None:
    assert original_template_split([1, 9, 5, 6, EOT, NEWLINE], [1, 9]) == ([1, 9], [5, 6, EOT, NEWLINE])
    # A merge across the boundary: split by length, so the context is not the prompt (as the original).
    assert original_template_split([1, 77, 6, EOT, NEWLINE], [1, 9]) == ([1, 77], [6, EOT, NEWLINE])
    with pytest.raises(InputError, match="fewer than 2"):
        original_template_split([1, 9, EOT], [1, 9])


def test_round_trips_only_when_the_original_scores_the_generated_ids_then_the_closing_ones() -> None:
    common = {"closing_ids": CLOSING, "prompt_ids": [1, 9], "context_ids": [1, 9]}
    assert round_trips([5, 6, EOT], hit_max_new_tokens=False, scored_ids=[5, 6, EOT, NEWLINE], **common)
    assert round_trips([5, 6], hit_max_new_tokens=True, scored_ids=[5, 6, EOT, NEWLINE], **common)
    assert not round_trips([5, 6, 6, EOT], hit_max_new_tokens=False, scored_ids=[5, 66, EOT, NEWLINE], **common)
    assert not round_trips([5, 6], hit_max_new_tokens=False, scored_ids=[5, 6, EOT, NEWLINE], **common)  # other stop
    moved = {**common, "context_ids": [1, 77]}
    assert not round_trips([5, 6, EOT], hit_max_new_tokens=False, scored_ids=[5, 6, EOT, NEWLINE], **moved)
