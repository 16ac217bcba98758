"""Responses that cannot be measured as they are: empty ones and ones cut at the length limit.

An empty response (no tokens, or only tokens that decode to blank text, e.g. a model stuck on a
special token) says nothing about its persona and, with no tokens, has no mean divergence. A
response cut at `max_new_tokens` is scored as far as it goes; a large share of them means the
limit, not the persona, shapes the responses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def response_label(response: dict[str, Any]) -> str:
    return f"{response['persona']}/q{response['question_index']}"


def is_empty(response: dict[str, Any]) -> bool:
    text = response.get("text")  # absent: not decoded here, judged by tokens alone
    return response["n_tokens"] == 0 or (text is not None and not str(text).strip())


def response_quality(responses: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Counts of empty and length-limited responses, with the empty ones named (persona/q<index>)."""
    empty = [response_label(r) for r in responses if is_empty(r)]
    hit = sum(bool(r["hit_max_new_tokens"]) for r in responses)
    return {
        "n_responses": len(responses),
        "n_empty": len(empty),
        "empty": empty,
        "hit_max_new_tokens": hit,
        "hit_max_new_tokens_share": hit / len(responses) if responses else 0.0,
    }
