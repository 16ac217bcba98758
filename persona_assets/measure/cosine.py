"""Hidden-state cosine similarity between personas (the baseline the divergences compete with)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

CENTRING_RUN_MEAN = "mean over the personas of this run"


def default_layers(num_layers: int) -> list[int]:
    """Four layers spread like 10/15/20/25 of a 28-layer model."""
    return sorted({max(1, min(num_layers, round(num_layers * f / 28))) for f in (10, 15, 20, 25)})


def centred_cosine(centroids: np.ndarray) -> np.ndarray:
    """centroids [N, H] (one per persona) → N×N cosine after subtracting the mean centroid.

    Without centring every persona shares a large common direction and all cosines sit near 1.
    """
    centred = centroids - centroids.mean(axis=0, keepdims=True)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    unit = centred / np.where(norms == 0, 1.0, norms)
    cosine = np.clip(unit @ unit.T, -1.0, 1.0)
    np.fill_diagonal(cosine, 1.0)
    return cosine


def first_non_finite(states: np.ndarray) -> tuple[int, int] | None:
    """(prompt, layer) indices of the first hidden state [prompts, layers, H] holding NaN/inf, else None.

    One NaN would make every centred cosine NaN (the centring mean spreads it to all personas).
    """
    finite = np.isfinite(states).all(axis=-1)
    if finite.all():
        return None
    prompt, layer = np.argwhere(~finite)[0]
    return int(prompt), int(layer)


def persona_prompts(llm: Any, evals: Any) -> list[list[int]]:
    """Every persona × question prompt (system = persona prompt, user = question), personas first: the order
    `cosine_by_layer` reads the hidden states in. `llm` needs `chat_prompt_ids`; `evals` is an EvalSet."""
    return [llm.chat_prompt_ids(p.prompt, q) for p in evals.personas for q in evals.questions]


def cosine_by_layer(
    states: np.ndarray, n_personas: int, n_questions: int, layers: Sequence[int]
) -> dict[str, np.ndarray]:
    """Per layer ("layer<L>"), the centred cosine between persona centroids.

    `states` [personas × questions, layers, H]: the last-prompt-token hidden states in `persona_prompts` order.
    A persona's centroid is its states averaged over the questions (the persona_cosine asset's definition).
    """
    centroids = states.reshape(n_personas, n_questions, len(layers), -1).mean(axis=1)  # [N, layers, H]
    return {f"layer{layer}": centred_cosine(centroids[:, k, :]) for k, layer in enumerate(layers)}
