"""Which response positions are teacher-forced and scored: this project's rule, or the earlier study's.

- ``generated`` (default): exactly the tokens the model generated — the end-of-turn token is scored
  when the model emitted it, and a response cut at ``max_new_tokens`` ends where it was cut.
- ``original_template``: what the earlier study's script scored. It re-renders the chat template
  around the response text and scores everything after the prompt, so every response is followed
  by the template's closing tokens (e.g. ``<|im_end|>`` and a newline in ChatML) — also a response cut
  at ``max_new_tokens``, for which the model produced neither. Reproduces its numbers (about 7–8%
  lower JS than ``generated`` on short, length-limited responses).

Both rules score the same positions up to the end of the generated tokens (a causal model's
earlier positions do not see later ones); they differ only in the appended positions. This
works on token ids: the earlier script re-tokenised the decoded text, which gives the same ids for
ordinary responses (the template's closing tokens are special tokens and never merge).

No dagster import.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from persona_assets.core.errors import InputError

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


def template_closing_ids(rendered_ids: Sequence[int], prompt_ids: Sequence[int], content_ids: Sequence[int]) -> list[int]:
    """The ids a chat template puts after an assistant message's content.

    ``rendered_ids``: the template applied to the conversation with the assistant message
    (tokenised); ``prompt_ids``: the same conversation up to the generation prompt; ``content_ids``:
    the assistant content's ids. The rendering must be prompt + content + closing.
    """
    rendered, prompt, content = list(rendered_ids), list(prompt_ids), list(content_ids)
    if rendered[: len(prompt)] != prompt:
        raise InputError("the rendered conversation does not start with the prompt ids: not the same template")
    if rendered[len(prompt) : len(prompt) + len(content)] != content:
        raise InputError("the assistant content's ids differ inside the rendered conversation (re-tokenisation merged them)")
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
