"""Which floating-point precision the loaded weights compute in, switched in place and exactly.

The weights are loaded in the resource's `dtype` (bfloat16 on the GPU by default). Teacher forcing
can run in float32 instead (`LLMResource.scoring_dtype`), and every reduced-precision run re-scores
its noise-floor sample in float32 to measure what precision moves. Both cast the same weights in
place rather than loading a second copy: every bfloat16 or float16 number is exactly a float32
number, so bfloat16 → float32 → bfloat16 gives back the loaded weights bit for bit, and a forward
in float32 after the upcast is the forward of a float32 load of the same checkpoint's bf16 values.

Only upcasts to float32 are offered: a float32 → bfloat16 cast would round the weights, and the
generation that follows would no longer use the loaded model.

torch is imported lazily (the resource module loads without it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from resources.model_loading import torch_dtype

FLOAT32 = "float32"


def check_scoring_dtype(loaded: str, scoring: str) -> None:
    """Refuse a scoring dtype that would round the loaded weights (only the same dtype or float32)."""
    if scoring not in (loaded, FLOAT32):
        raise ValueError(
            f"scoring_dtype {scoring!r} with weights loaded in {loaded!r}: teacher forcing can run in the loaded "
            "dtype or in float32 (an exact upcast); load the model in the lower precision instead"
        )


def _cast_parameters(model: Any, dtype: Any) -> None:
    """The weights only: buffers keep the dtype they were loaded in (`model.to` would also round the
    float32 rotary frequencies, `inv_freq`, to bfloat16 on the way back, changing every later forward)."""
    for parameter in model.parameters():
        if parameter.is_floating_point() and parameter.dtype != dtype:
            parameter.data = parameter.data.to(dtype)


def loaded_dtype(engine: Any) -> str:
    """The dtype the engine's weights were loaded in (what they are cast back to)."""
    return getattr(engine, "loaded_dtype", engine.dtype)


def cast_engine(engine: Any, dtype: str) -> None:
    """Cast the engine's weights (not its buffers) to `dtype` in place; a no-op when already there."""
    if engine.dtype == dtype:
        return
    if not hasattr(engine, "loaded_dtype"):
        engine.loaded_dtype = engine.dtype  # what the weights were loaded in: the only way back down
    check_scoring_dtype(engine.loaded_dtype, dtype)
    try:
        _cast_parameters(engine.model, torch_dtype(dtype))
    except BaseException:
        # Out of memory part-way: the cast parameters go back (exactly), the rest never moved.
        _cast_parameters(engine.model, torch_dtype(engine.dtype))
        raise
    engine.dtype = dtype
    if str(engine.device).startswith("cuda"):
        import torch

        torch.cuda.empty_cache()  # the other precision's storage goes back before the next forward


@contextmanager
def engine_in_dtype(engine: Any, dtype: str) -> Iterator[Any]:
    """The engine computing in `dtype` inside the block, and in its previous dtype after it."""
    previous = engine.dtype
    cast_engine(engine, dtype)
    try:
        yield engine
    finally:
        cast_engine(engine, previous)
