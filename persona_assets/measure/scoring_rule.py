"""Which response positions are teacher-forced and scored: this project's rule, or the earlier study's.

- ``generated`` (default): exactly the tokens the model generated — the end-of-turn token is scored
  when the model emitted it, and a response cut at ``max_new_tokens`` ends where it was cut.
- ``original_template``: what the earlier study's script scored, id for id. It decoded each
  response to text (vLLM's output text: special tokens skipped, the stop token left out), rendered
  the chat template around that text under each scoring persona's system prompt, tokenised the
  rendered string whole and scored every id after the prompt's length (`original_template_split`).
  So every response is followed by the template's closing tokens (e.g. ``<|im_end|>`` and a newline
  in ChatML) — also a response cut at ``max_new_tokens``, for which the model produced neither —
  and the text is re-tokenised: generated ``'.' 'Ċ' 'Ċ'`` becomes ``'.' 'ĊĊ'`` before ``<|im_end|>``.

A response *round-trips* when the original's ids are its generated ids (end-of-turn token dropped)
followed by the template's closing ids (`scored_response(..., rule=ORIGINAL_TEMPLATE)`, the id-level
form of the rule). Then both rules score the same ids up to the end of the generated tokens (a
causal model's earlier positions do not see later ones) and differ only in the appended positions.
A response that does not round-trip is scored on other ids and positions; `original_template` runs
count them and say which.

No dagster import.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from persona_assets.runs.errors import InputError

GENERATED = "generated"
ORIGINAL_TEMPLATE = "original_template"
SCORING_RULES = (GENERATED, ORIGINAL_TEMPLATE)


@dataclass(frozen=True)
class ScoredResponse:
    """The ids to teacher-force and, per id, whether the model generated it."""

    ids: list[int]
    generated: list[bool]
    rule: str

    @property
    def n_appended(self) -> int:
        return self.generated.count(False)


def template_closing_ids(
    rendered_ids: Sequence[int], prompt_ids: Sequence[int], content_ids: Sequence[int]
) -> list[int]:
    """The ids a chat template puts after an assistant message's content.

    ``rendered_ids``: the template applied to the conversation with the assistant message
    (tokenised); ``prompt_ids``: the same conversation up to the generation prompt; ``content_ids``:
    the assistant content's ids. The rendering must be prompt + content + closing.
    """
    rendered, prompt, content = list(rendered_ids), list(prompt_ids), list(content_ids)
    if rendered[: len(prompt)] != prompt:
        raise InputError("the rendered conversation does not start with the prompt ids: not the same template")
    if rendered[len(prompt) : len(prompt) + len(content)] != content:
        raise InputError(
            "the assistant content's ids differ inside the rendered conversation (re-tokenisation merged them)"
        )
    return rendered[len(prompt) + len(content) :]


def scored_response(
    response_ids: Sequence[int], *, hit_max_new_tokens: bool, closing_ids: Sequence[int], rule: str = GENERATED
) -> ScoredResponse:
    """The positions a rule scores for one generated response.

    Args:
        response_ids: what the model generated (ending with the end-of-turn token when it stopped
            by itself).
        hit_max_new_tokens: whether generation stopped at the length limit.
        closing_ids: the template's closing ids (`template_closing_ids`); its first id is the
            end-of-turn token.
        rule: ``"generated"`` or ``"original_template"``.
    """
    if rule not in SCORING_RULES:
        raise InputError(f"scoring rule must be one of {list(SCORING_RULES)}, got {rule!r}")
    ids = [int(t) for t in response_ids]
    closing = [int(t) for t in closing_ids]
    if not ids:
        raise InputError("cannot score an empty response")
    if not closing:
        raise InputError("closing_ids is empty: the template's end-of-turn token is needed")
    end_of_turn = closing[0]
    emitted = ids[-1] == end_of_turn
    if not emitted and not hit_max_new_tokens:
        raise InputError("a response that stopped before max_new_tokens must end with the end-of-turn token")
    if rule == GENERATED:
        return ScoredResponse(ids, [True] * len(ids), rule)
    content = ids[:-1] if emitted else ids
    # The template re-adds the end-of-turn token: when the model emitted it, that position is its own.
    generated = [True] * len(content) + [emitted] + [False] * (len(closing) - 1)
    return ScoredResponse(content + closing, generated, rule)


def original_template_split(rendered_ids: Sequence[int], prompt_ids: Sequence[int]) -> tuple[list[int], list[int]]:
    """The earlier study's split of a re-rendered conversation: (context, scored ids).

    ``rendered_ids``: the chat template applied to (system, user, assistant = the decoded response)
    as a string, tokenised whole; ``prompt_ids``: the prompt (template with the generation prompt on).
    The original scored ``rendered[len(prompt):]`` with ``rendered[:len(prompt)]`` as context: a
    split by length, so where the tokeniser merged across the boundary the context is not the prompt.
    It skipped a response with fewer than 2 scored ids; here that is an error, not a silent drop.
    """
    rendered, n_prompt = [int(t) for t in rendered_ids], len(prompt_ids)
    if len(rendered) < n_prompt + 2:
        raise InputError(
            f"the re-rendered conversation has {len(rendered) - n_prompt} ids after the prompt: "
            "the original scoring skipped such a response (fewer than 2), this run refuses it"
        )
    return rendered[:n_prompt], rendered[n_prompt:]


def round_trips(
    response_ids: Sequence[int],
    *,
    hit_max_new_tokens: bool,
    closing_ids: Sequence[int],
    context_ids: Sequence[int],
    prompt_ids: Sequence[int],
    scored_ids: Sequence[int],
) -> bool:
    """Whether the original's split (context, scored) is the prompt and the generated ids + closing ids."""
    if [int(t) for t in context_ids] != [int(t) for t in prompt_ids]:
        return False
    try:
        by_id = scored_response(
            response_ids, hit_max_new_tokens=hit_max_new_tokens, closing_ids=closing_ids, rule=ORIGINAL_TEMPLATE
        )
    except InputError:  # e.g. stopped on another stop token: the decoded text cannot give its ids back
        return False
    return by_id.ids == [int(t) for t in scored_ids]
