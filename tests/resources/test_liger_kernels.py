"""The Liger patch is undone after teacher forcing, and asked for without liger-kernel it fails clearly.

Liger's kernels themselves need a GPU (Triton); their values are compared with the unfused path by
benchmarks/gpu_phase1.py (--tf-variants eager,liger). Here: the undo, on a real model and a patch
that changes it the ways Liger's `apply_liger_kernel_to_*` does.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

from persona_assets.runs.errors import InputError
from resources.fast_engine import batch_response_divergences
from resources.hf_engine import HFEngine
from resources.liger_kernels import liger_teacher_forcing, reverted_patches


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return HFEngine.load(str(tiny_model_dir))


def _liger_like_patch(model):
    """What apply_liger_kernel_to_llama(model=...) changes: module-level names and instance forwards."""
    modeling = sys.modules[type(model).__module__]

    def patch():
        modeling.apply_rotary_pos_emb = lambda q, k, cos, sin, *args, **kwargs: (q, k)  # no rotation at all
        modeling.LlamaRMSNorm = torch.nn.Identity
        modeling.added_by_patch = True
        for module in model.modules():
            if type(module).__name__ == "LlamaRMSNorm":
                module.forward = (lambda self, x: x).__get__(module)
                module.casting_mode = "llama"

    return patch


def test_reverted_patches_restore_the_model_and_its_modeling_module(engine):
    model = engine.model
    modeling = sys.modules[type(model).__module__]
    names_before = dict(vars(modeling))
    ids = torch.tensor([engine.chat_prompt_ids("You are a pirate.", "Hello?")])
    with torch.inference_mode():
        before = model(input_ids=ids).logits
        with pytest.raises(RuntimeError, match="inside"), reverted_patches(model, _liger_like_patch(model)):
            patched = model(input_ids=ids).logits
            assert not torch.allclose(patched, before)
            raise RuntimeError("inside the block")  # undone on errors too
        after = model(input_ids=ids).logits
    assert torch.equal(after, before)
    assert dict(vars(modeling)) == names_before
    assert not any({"forward", "casting_mode"} & set(vars(m)) for m in model.modules())


@pytest.mark.skipif(importlib.util.find_spec("liger_kernel") is not None, reason="liger-kernel is installed here")
def test_liger_without_the_package_fails_before_any_work(engine):
    with pytest.raises(InputError, match="liger-kernel"), liger_teacher_forcing(engine.model):
        pass
    prompts = [engine.chat_prompt_ids(s, "Hi?") for s in ("A.", "B.")]
    with pytest.raises(InputError, match="liger-kernel"):
        batch_response_divergences(engine, [(prompts, [101, 102], [(0, 1)])], backend="torch", liger=True)


@pytest.mark.skipif(importlib.util.find_spec("liger_kernel") is not None, reason="liger-kernel is installed here")
def test_gpu_default_uses_liger_only_when_it_is_installed(tiny_model_dir):
    """GpuLLM's default (null) resolves to Liger's kernels only where liger-kernel covers the model; true insists
    (the run then fails clearly, above); the noise floor's key and the run's metadata record what it resolved to."""
    from resources.gpu_llm import GpuLLM
    from resources.liger_kernels import liger_covers
    from resources.noise_floor_cache import scoring_switches

    assert GpuLLM.model_fields["liger_teacher_forcing"].default is None
    assert GpuLLM.model_fields["shared_prefixes"].default is True
    assert not liger_covers("llama")
    auto = GpuLLM(model=str(tiny_model_dir), use_vllm=False)
    assert auto.model_type() == "llama" and auto.uses_liger() is False
    assert GpuLLM(model=str(tiny_model_dir), liger_teacher_forcing=True).uses_liger() is True
    assert scoring_switches(auto) == {
        "shared_prefixes": True,
        "teacher_forcing_batch_tokens": 16384,
        "liger_teacher_forcing": False,
    }
