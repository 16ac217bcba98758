"""The model steps' first act: refuse persona prompts / questions that would steer the experiment
or overflow the model (persona_assets/inputs/prompt_safety.py), with the tokenizer and config.json
only, before any weights load."""

from collections.abc import Mapping
from typing import Any

import dagster as dg

from persona_assets.config import GenerationConfig
from persona_assets.runs.errors import InputError
from persona_assets.inputs.eval_set import EvalSet
from persona_assets.inputs.prompt_safety import check_prompts
from resources.llm import LLMResource


def run_max_new_tokens(run_config: Mapping[str, Any]) -> int:
    """The run's response length limit (`ops.generations.config.max_new_tokens` or its default)."""
    settings = ((run_config.get("ops") or {}).get("generations") or {}).get("config") or {}
    return GenerationConfig(**settings).max_new_tokens


def refuse_unsafe_prompts(llm: LLMResource, evals: EvalSet, *, max_new_tokens: int) -> dict[str, Any]:
    """dg.Failure naming the persona / question and the token, or the lengths; else a short report."""
    try:
        return check_prompts(
            llm.tokenizer,
            [
                *((p.name, p.prompt) for p in evals.personas),
                # Paraphrases (the within-persona baseline) go before the same model: the same checks.
                *(
                    (f"{p.name} (paraphrase {k + 1})", text)
                    for p in evals.personas
                    for k, text in enumerate(p.paraphrases)
                ),
            ],
            evals.questions,
            prompt_ids=llm.chat_prompt_ids,
            max_new_tokens=max_new_tokens,
            window=llm.context_length(),
            files=[evals.sources[k] for k in ("personas_file", "questions_file") if k in evals.sources],
        )
    except InputError as exc:
        raise dg.Failure(str(exc)) from None
