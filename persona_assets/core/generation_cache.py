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

from persona_assets.storage import atomic_write_text


def generation_key(*, model_fingerprint: str, dtype: str, device_kind: str, backend: str, max_new_tokens: int, prompt_ids: list[int]) -> str:
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


class GenerationCache:
    def __init__(self, directory: Path):
        self.directory = directory

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return None  # a corrupt entry is regenerated, never trusted

    def put(self, key: str, record: dict[str, Any]) -> None:
        atomic_write_text(self._path(key), json.dumps(record, sort_keys=True))
