"""Hidden-state cosine similarity between personas (the baseline the divergences compete with)."""

from __future__ import annotations

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
