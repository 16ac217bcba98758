"""Liger's fused Triton kernels (RMSNorm, RoPE, SwiGLU) for the teacher-forcing forward only.

`liger_teacher_forcing(model)` patches them into the loaded model for the length of a block and
undoes every change when it ends, so generation (measured slower with them, and their rounding
can flip near-tied greedy tokens) and later model loads run transformers' own modules.

Liger patches in two places, both restored here:
- the model's modeling module (`transformers.models.<type>.modeling_<type>`): module-level names
  such as `apply_rotary_pos_emb` (looked up at call time by the attention) and the RMSNorm/MLP
  classes (used by models built later);
- instance attributes of the already-built modules (a bound `forward`, `_get_name`, RMSNorm
  settings such as `offset` and `casting_mode`).
Cross entropy and the fused linear cross entropy are never applied: teacher forcing needs the
full distributions, which the LM head computes separately.

liger-kernel (the `gpu` extra) is imported only when asked for; without it, or for a model type
it does not cover, `liger_teacher_forcing` raises InputError (`liger_covers` asks without raising).
No dagster import.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from persona_assets.runs.errors import InputError

FUSED = dict(rope=True, rms_norm=True, swiglu=True, cross_entropy=False, fused_linear_cross_entropy=False)
_MISSING = object()


def liger_patch_function(model_type: str) -> Callable[..., None]:
    """Liger's `apply_liger_kernel_to_<type>` for this model type (e.g. qwen2, llama)."""
    try:
        from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN
    except ImportError as error:
        raise InputError(
            f"liger_teacher_forcing needs liger-kernel (pip install '.[gpu]', or liger-kernel itself): {error}"
        ) from error
    patch = MODEL_TYPE_TO_APPLY_LIGER_FN.get(model_type)
    if patch is None:
        raise InputError(f"liger-kernel has no kernels for model type {model_type!r}; turn liger_teacher_forcing off")
    return patch


def liger_covers(model_type: str) -> bool:
    """Whether liger-kernel is installed and has kernels for this model type (nothing raised)."""
    try:
        liger_patch_function(model_type)
    except InputError:
        return False
    return True


@contextmanager
def reverted_patches(model: Any, patch: Callable[[], None]) -> Iterator[None]:
    """Run `patch()` (which may change the model's modules and its modeling module), and undo every
    change to those when the block ends: attributes added are removed, attributes replaced restored."""
    modeling = sys.modules[type(model).__module__]
    module_names = dict(vars(modeling))
    instances = [(m, dict(vars(m))) for m in model.modules()]
    try:
        patch()
        yield
    finally:
        for name in set(vars(modeling)) - set(module_names):
            delattr(modeling, name)
        for name, value in module_names.items():
            if vars(modeling).get(name, _MISSING) is not value:
                setattr(modeling, name, value)
        for module, saved in instances:
            state = vars(module)
            for name in set(state) - set(saved):
                del state[name]
            for name, value in saved.items():
                if state.get(name, _MISSING) is not value:
                    state[name] = value


@contextmanager
def liger_teacher_forcing(model: Any) -> Iterator[None]:
    """Within the block, `model` runs Liger's RMSNorm, RoPE and SwiGLU kernels (see the module docstring)."""
    apply = liger_patch_function(str(model.config.model_type))
    accepted = inspect.signature(apply).parameters
    options = {name: value for name, value in FUSED.items() if name in accepted}
    with reverted_patches(model, lambda: apply(model=model, **options)):
        yield
