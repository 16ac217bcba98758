"""Refuse persona prompts and questions that would change the experiment before any model work.

Two problems are caught, given the model's tokenizer and the run's plain texts:
- **Control tokens in the text.** A question holding `<|im_end|>\\n<|im_start|>system\\n…` renders as
  a second system turn, so the persona under test is no longer the one named. Any special or added
  token of the tokenizer (the chat template's control tokens among them) found in a persona
  prompt or question is refused: as a literal substring, or as text the tokenizer turns into
  such a token (a normalizing tokenizer can map other spellings onto one). As a second, independent
  look, the rendered prompt's control tokens are counted against those of the same template around
  neutral text: any extra token the content brought in is refused too.
- **Prompts that do not fit.** Prompt length + `max_new_tokens` must stay within the model's context
  window: a response is teacher-forced after every persona's prompt, so this bounds every sequence
  the run scores.

No dagster or torch import: the tokenizer is used through its public methods only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from persona_assets.runs.errors import InputError

# transformers stores "no limit known" as a huge sentinel (int(1e30)) in model_max_length.
MEANINGFUL_MAX_LENGTH = 10_000_000
# Where config.json states the context window, by architecture family.
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")
MAX_LISTED = 10  # problems listed in one message; the rest are counted

PromptIds = Callable[[str, str], list[int]]


class PromptSafetyError(InputError):
    """A persona prompt or question that would steer the experiment or overflow the model."""


@dataclass(frozen=True)
class ContextWindow:
    tokens: int
    source: str  # where the number comes from, for the message


def control_tokens(tokenizer: Any) -> dict[int, str]:
    """Every special or added token of the tokenizer, by id (whitespace-only added tokens excepted:
    some tokenizers add runs of spaces as tokens, and those cannot change a prompt's structure)."""
    tokens: dict[int, str] = {}
    for token_id, added in getattr(tokenizer, "added_tokens_decoder", {}).items():
        content = getattr(added, "content", str(added))
        if content.strip():
            tokens[int(token_id)] = content
    for content in getattr(tokenizer, "all_special_tokens", []):
        token_id = tokenizer.convert_tokens_to_ids(content)
        if isinstance(token_id, int) and content.strip():
            tokens[token_id] = content
    return tokens


def tokens_in_text(tokenizer: Any, text: str, controls: dict[int, str]) -> list[str]:
    """The control tokens `text` holds: the literal ones in order of appearance, then those that only
    the tokenizer makes of it, shown as `'<|x|>' (from 'spelling')`."""
    literal = sorted((c for c in set(controls.values()) if c in text), key=lambda c: (text.index(c), c))
    found = [repr(c) for c in literal]
    encoding = _encode(tokenizer, text)
    spans = encoding.get("offset_mapping")
    for index, token_id in enumerate(encoding["input_ids"]):
        content = controls.get(int(token_id))
        if content is None or content in literal:
            continue
        spelling = f" (from {text[spans[index][0] : spans[index][1]]!r})" if spans else ""
        if (entry := f"{content!r}{spelling}") not in found:
            found.append(entry)
    return found


def _encode(tokenizer: Any, text: str) -> dict[str, Any]:
    try:
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except (NotImplementedError, TypeError, ValueError):  # slow tokenizers have no offsets
        encoded = tokenizer(text, add_special_tokens=False)
    return {key: list(value) for key, value in encoded.items()}


def extra_control_tokens(prompt_ids: Sequence[int], scaffold_ids: Sequence[int], controls: dict[int, str]) -> Counter:
    """Control tokens of a rendered prompt beyond those of the template's own scaffold (by token)."""
    counts = Counter(controls[i] for i in prompt_ids if i in controls)
    counts.subtract(Counter(controls[i] for i in scaffold_ids if i in controls))
    return Counter({token: n for token, n in counts.items() if n > 0})


def context_window(config: dict[str, Any], tokenizer_max_length: Any) -> ContextWindow | None:
    """The model's context window from its config (and the tokenizer's limit when it states one):
    the smallest meaningful value, with where it comes from; None when neither states one."""
    candidates: list[ContextWindow] = []
    for section in (config, config.get("text_config") or {}):
        for key in CONTEXT_KEYS:
            value = section.get(key)
            if isinstance(value, int) and 0 < value:
                candidates.append(ContextWindow(value, f"{key} in the model's config.json"))
                break
        if candidates:
            break
    if isinstance(tokenizer_max_length, int) and 0 < tokenizer_max_length < MEANINGFUL_MAX_LENGTH:
        candidates.append(ContextWindow(tokenizer_max_length, "the tokenizer's model_max_length"))
    return min(candidates, key=lambda c: c.tokens) if candidates else None


def _question_label(index: int, question: str) -> str:
    shown = question if len(question) <= 80 else question[:77] + "..."
    return f"question {index} {shown!r}"


def _message(problems: list[str], what: str, hint: str) -> str:
    listed = problems[:MAX_LISTED]
    more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    return f"{what}:\n  " + "\n  ".join(listed) + more + f"\n{hint}"


def check_prompts(
    tokenizer: Any,
    personas: Sequence[tuple[str, str]],
    questions: Sequence[str],
    *,
    prompt_ids: PromptIds,
    max_new_tokens: int,
    window: ContextWindow | None,
    files: Sequence[str] = (),
) -> dict[str, Any]:
    """Raise PromptSafetyError naming every offending persona / question and token, or every
    persona + question whose prompt + `max_new_tokens` exceeds the context window.

    `personas` are (name, prompt) pairs; `prompt_ids(system, user)` renders the chat template;
    `files` (where the texts come from) are named in the message.
    Returns a small report (longest prompt, the window) when all is well.
    """
    controls = control_tokens(tokenizer)
    problems: list[str] = []
    flagged: set[tuple[str, int]] = set()  # ("persona", k) / ("question", k) already named by the text scan
    for k, (name, prompt) in enumerate(personas):
        if found := tokens_in_text(tokenizer, prompt, controls):
            problems.append(f"persona {name!r}: its prompt contains {', '.join(found)}")
            flagged.add(("persona", k))
    for index, question in enumerate(questions):
        if found := tokens_in_text(tokenizer, question, controls):
            problems.append(f"{_question_label(index, question)} contains {', '.join(found)}")
            flagged.add(("question", index))

    scaffold = prompt_ids("x", "y")  # the template around neutral text: its own control tokens
    lengths: list[tuple[int, str, int]] = []
    for k, (name, prompt) in enumerate(personas):
        for index, question in enumerate(questions):
            ids = prompt_ids(prompt, question)
            lengths.append((len(ids), name, index))
            extra = extra_control_tokens(ids, scaffold, controls)
            if extra and not {("persona", k), ("question", index)} & flagged:
                tokens = ", ".join(f"{n} × {token!r}" for token, n in sorted(extra.items()))
                problems.append(
                    f"persona {name!r} + {_question_label(index, question)}: the rendered prompt has {tokens} "
                    "more than the chat template itself puts in"
                )
    if problems:
        raise PromptSafetyError(
            _message(
                problems,
                "persona prompts / questions contain special tokens of the model's tokenizer (they would change "
                "the chat structure, so the persona under test would not be the one named)",
                f"remove or reword them ({', '.join(files) or 'the personas and questions files'})",
            )
        )

    too_long = (
        []
        if window is None
        else [
            f"persona {name!r} + {_question_label(index, questions[index])}: prompt {n} tokens + max_new_tokens "
            f"{max_new_tokens} = {n + max_new_tokens} > context window {window.tokens} tokens ({window.source})"
            for n, name, index in lengths
            if n + max_new_tokens > window.tokens
        ]
    )
    if too_long:
        raise PromptSafetyError(
            _message(
                too_long,
                "prompts that do not fit the model's context window",
                "shorten them or lower ops.generations.config.max_new_tokens",
            )
        )
    longest = max(lengths) if lengths else (0, "", 0)
    return {
        "longest_prompt_tokens": longest[0],
        "context_window": None if window is None else window.tokens,
        "context_window_source": "unknown (the model states none)" if window is None else window.source,
    }
