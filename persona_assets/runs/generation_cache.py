"""Content-addressed cache of greedy responses: a re-run only generates what is new.

The key covers everything that determines a greedy response: the model's fingerprint, dtype,
device kind and generation backend, the response length limit, and the exact prompt token ids
(which encode the system prompt, the question and the chat template).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from persona_assets.runs.storage import atomic_write_text, cache_entry_path


def generation_key(
    *, model_fingerprint: str, dtype: str, device_kind: str, backend: str, max_new_tokens: int, prompt_ids: list[int]
) -> str:
    payload = json.dumps(
        {
            "model": model_fingerprint,
            "dtype": dtype,
            "device_kind": device_kind,
            "backend": backend,
            "max_new_tokens": max_new_tokens,
            "prompt_ids": prompt_ids,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def generation_items(llm: Any, evals: Any, max_new_tokens: int) -> list[dict[str, Any]]:
    """One item per persona × question (persona order, then questions): its prompt ids and cache key.

    `llm` needs `describe()` and `chat_prompt_ids()` (no weights are loaded); `evals` is an EvalSet.
    """
    info = llm.describe()
    items = []
    for persona in evals.personas:
        for q_index, question in enumerate(evals.questions):
            prompt_ids = llm.chat_prompt_ids(persona.prompt, question)
            key = generation_key(
                model_fingerprint=info["model_fingerprint"],
                dtype=info["dtype"],
                device_kind=info["device"].split(":")[0],
                backend=info["generation_backend"],
                max_new_tokens=max_new_tokens,
                prompt_ids=prompt_ids,
            )
            items.append(
                {
                    "persona": persona.name,
                    "question_index": q_index,
                    "question": question,
                    "prompt_ids": prompt_ids,
                    "key": key,
                }
            )
    return items


class GenerationCache:
    def __init__(self, directory: Path):
        self.directory = directory

    def get(self, key: str) -> dict[str, Any] | None:
        path = cache_entry_path(self.directory, key)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return None  # a corrupt entry is regenerated, never trusted

    def put(self, key: str, record: dict[str, Any]) -> None:
        atomic_write_text(cache_entry_path(self.directory, key), json.dumps(record, sort_keys=True))
