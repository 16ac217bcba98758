"""What can go wrong while teacher-forcing, and how it is told.

- `NonFiniteLogitsError`: an engine found NaN/inf logits (raised where the scores are made, with
  indices only); `score_missing` turns it into a `TeacherForcingError` naming the personas,
  question and position, before anything of the batch reaches the cache.
- Out of accelerator memory: `is_out_of_memory` recognises `torch.OutOfMemoryError` (only that:
  other errors are real bugs and must surface), `free_accelerator_memory` releases the cached
  blocks so a smaller retry can fit; `halving_batch_on_out_of_memory` retries a whole batched
  call (generation) with half the batch until it fits.

No dagster import; torch is imported only when asked about.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class NonFiniteLogitsError(ArithmeticError):
    """NaN or ±inf logits at a scored position: the model's output there is not a distribution.

    `item` is the scoring item (index into the engine call's items), `scorer` the scoring
    sequence within it, `position` the response token whose distribution is broken (0-based).
    """

    def __init__(self, scorer: int, position: int, item: int = 0):
        self.scorer, self.position, self.item = scorer, position, item
        super().__init__(f"non-finite logits: item {item}, scorer {scorer}, response position {position}")


def raise_if_non_finite(finite_rows: Any, item: int = 0) -> None:
    """NonFiniteLogitsError at the first False of a [S, T] bool tensor "row is finite"."""
    if not bool(finite_rows.all()):
        scorer, position = (int(i) for i in (~finite_rows).nonzero()[0])
        raise NonFiniteLogitsError(scorer, position, item)


class TeacherForcingError(RuntimeError):
    """Teacher forcing cannot go on; the message names the response, personas and what to do."""


def is_out_of_memory(error: BaseException) -> bool:
    """True for torch's out-of-memory error (CUDA and other accelerators), and nothing else."""
    import torch

    return isinstance(error, torch.OutOfMemoryError)


def free_accelerator_memory() -> None:
    """Drop unreachable tensors and return cached CUDA blocks (call after leaving the `except`)."""
    gc.collect()
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def halving_batch_on_out_of_memory(
    run: Callable[[int], T], batch_size: int, *, what: str, warn: Callable[[str], None] | None = None
) -> T:
    """`run(batch_size)`, retried with half the batch after each out-of-memory error.

    The smaller call starts over (what the failed call had done is lost); if even a batch of one
    does not fit, raises a RuntimeError naming `what`.
    """
    while True:
        out_of_memory = False
        try:
            return run(batch_size)
        except Exception as error:  # noqa: BLE001 - only out-of-memory is handled, the rest re-raised
            if not is_out_of_memory(error):
                raise
            out_of_memory = True  # handled below, once the exception (and its frames' tensors) is gone
        if out_of_memory:
            free_accelerator_memory()
            if batch_size <= 1:
                raise RuntimeError(f"{what}: out of accelerator memory even with a batch of one")
            batch_size //= 2
            if warn:
                warn(f"{what}: out of accelerator memory; halved the batch, retrying with batch_size {batch_size}")
