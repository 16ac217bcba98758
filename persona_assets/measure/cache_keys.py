"""Keys of the divergence store: what fixes a response's entry and a scoring pair within it.

A key covers the model's fingerprint, dtype and device kind, the response's generation cache key,
its token ids, the generator's prompt ids and `DIVERGENCE_CODE_VERSION` (see `divergence_store`).
No dagster import.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any


# 2: the reference path renormalises the float32 logits in float64 (no float32 log_softmax first).
# 3: original_template scores the re-tokenised ids of the decoded response, as the earlier study did.
DIVERGENCE_CODE_VERSION = "3"


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def response_key(
    *,
    model_fingerprint: str,
    dtype: str,
    device_kind: str,
    generation_key: str,
    response_ids: Sequence[int],
    generator_prompt_ids: Sequence[int],
    code_version: str = DIVERGENCE_CODE_VERSION,
) -> str:
    """Key of one response's entry (see the module docstring for what it covers)."""
    return _digest(
        {
            "model": model_fingerprint,
            "dtype": dtype,
            "device_kind": device_kind,
            "generation_key": generation_key,
            "response_ids": [int(t) for t in response_ids],
            "generator_prompt_ids": [int(t) for t in generator_prompt_ids],
            "code_version": code_version,
        }
    )


def pair_key(prompt_ids_a: Sequence[int], prompt_ids_b: Sequence[int]) -> str:
    """Key of one scoring pair within a response's entry: the two scorers' prompt ids, in order."""
    return _digest([[int(t) for t in prompt_ids_a], [int(t) for t in prompt_ids_b]])[:32]
