"""Checks that a model can serve the experiment, run on the tokenizer and config alone (no weights).

Every failure is an InputError that names the model and says what to do. They run when the
tokenizer is first loaded, i.e. before any step loads weights, so a bad model stops a run early.

No dagster import; transformers objects are passed in.
"""

from __future__ import annotations

from typing import Any

from persona_assets.runs.errors import InputError

# Two system prompts that any persona-aware chat template must render differently.
PROBE_SYSTEM_PROMPTS = ("You are a pirate.", "You are a librarian.")
PROBE_QUESTION = "What is your favourite colour?"


def _probe_ids(tokenizer: Any, system_prompt: str) -> list[int]:
    messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": PROBE_QUESTION}]
    encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = encoded["input_ids"] if hasattr(encoded, "keys") else encoded
    return [int(i) for i in (ids[0] if ids and isinstance(ids[0], list) else ids)]


def check_chat_template(tokenizer: Any, model_name: str) -> None:
    """The tokenizer has a chat template, and that template puts the system prompt into the prompt.

    Personas are system prompts: a template that drops or rejects the system message would make
    every persona the same prompt, and every divergence zero.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise InputError(
            f"model {model_name!r}: the tokenizer has no chat template (no chat_template.jinja and no "
            "'chat_template' in tokenizer_config.json); use an instruct/chat model or add its chat template"
        )
    try:
        first, second = (_probe_ids(tokenizer, prompt) for prompt in PROBE_SYSTEM_PROMPTS)
    except Exception as error:  # jinja raises e.g. "System role not supported"
        raise InputError(
            f"model {model_name!r}: the chat template fails on a system message ({error}); personas are system "
            "prompts, so use a model whose chat template supports the system role"
        ) from error
    if first == second:
        raise InputError(
            f"model {model_name!r}: the chat template ignores the system prompt (two different system prompts give "
            "identical prompt token ids); personas are system prompts, so use a chat template that renders the "
            "system message"
        )


def check_vocabulary(tokenizer: Any, model_config: Any, model_name: str) -> None:
    """Every token id the tokenizer can produce indexes a row of the model's embedding.

    A tokenizer smaller than the model's vocabulary is normal (Qwen pads its embedding to a
    multiple of 128); a larger one means the tokenizer belongs to another model.
    """
    text_config = model_config.get_text_config() if hasattr(model_config, "get_text_config") else model_config
    vocab_size = getattr(text_config, "vocab_size", None)
    if vocab_size is None:
        return  # nothing to compare against; the forward pass would tell
    n_tokens = len(tokenizer)
    if n_tokens > int(vocab_size):
        raise InputError(
            f"model {model_name!r}: the tokenizer has {n_tokens} tokens but config.json vocab_size is {vocab_size}, "
            f"so token ids ≥ {vocab_size} would index past the embedding; the tokenizer and the weights come from "
            "different models: use the tokenizer saved with these weights"
        )
