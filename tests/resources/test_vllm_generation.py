"""vLLM generation path: runs only where vllm is importable and a GPU is present."""

from __future__ import annotations

import importlib.util

import pytest

vllm_missing = importlib.util.find_spec("vllm") is None


@pytest.mark.gpu
@pytest.mark.skipif(vllm_missing, reason="vllm is not installed")
def test_vllm_greedy_matches_transformers(tiny_model_dir):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("vllm needs a CUDA device")
    from resources.hf_engine import HFEngine
    from resources.vllm_generation import generate_with_vllm

    engine = HFEngine.load(str(tiny_model_dir), device="cuda", dtype="float32")
    prompts = [engine.chat_prompt_ids(s, "Name a colour.") for s in ("You are a pirate.", "Be brief.")]
    expected = engine.generate(prompts, max_new_tokens=8)
    got = generate_with_vllm(
        str(tiny_model_dir),
        prompts,
        max_new_tokens=8,
        dtype="float32",
        gpu_memory_utilization=0.3,
        stop_token_ids=sorted(engine.stop_ids),
    )
    assert [g.token_ids for g in got] == [g.token_ids for g in expected]


def test_gpu_resource_falls_back_to_transformers_without_vllm(monkeypatch):
    from resources.gpu_llm import GpuLLM

    original = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else original(name, *a))
    assert GpuLLM(model="embedded").generation_backend() == "transformers-lean-fixed"
    assert GpuLLM(model="embedded", use_vllm=False).generation_backend() == "transformers-lean-fixed"
    assert (
        GpuLLM(model="embedded", use_vllm=False, generation_cache="dynamic").generation_backend()
        == "transformers-lean-dynamic"
    )
    assert GpuLLM(model="embedded", use_vllm=False, lean_generation=False).generation_backend() == "transformers"


def test_unknown_generation_cache_is_refused_when_the_resource_is_built():
    import pydantic

    from resources.gpu_llm import GpuLLM

    with pytest.raises(pydantic.ValidationError, match="generation_cache must be one of fixed"):
        GpuLLM(model="embedded", generation_cache="paged")
    from resources.lean_generation import GENERATION_CACHES

    for name in GENERATION_CACHES:  # the resource accepts exactly the engine's decode caches
        assert GpuLLM(model="embedded", generation_cache=name).generation_cache == name
