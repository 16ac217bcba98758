"""The lean decode loop on a tiny random Llama: the tokens of HFEngine.generate (generate()), every cache."""

from __future__ import annotations

import pytest

from resources.hf_engine import HFEngine
from resources.lean_generation import lean_generate

SYSTEMS = ["You are a pirate.", "You are a careful medical doctor who explains things slowly.", "Be brief."]
QUESTIONS = ["What is the moon made of?", "Tell me a story.", "Name a colour."]


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return HFEngine.load(str(tiny_model_dir))


@pytest.mark.parametrize("cache_impl", ["dynamic", "static", "fixed"])
def test_lean_generation_yields_generate_tokens(engine, cache_impl):
    prompts = [engine.chat_prompt_ids(s, q) for s in SYSTEMS for q in QUESTIONS[:2]]
    assert len({len(p) for p in prompts}) > 1, "different prompt lengths exercise the left padding"
    expected = engine.generate(prompts, max_new_tokens=10, batch_size=4)
    got = lean_generate(engine, prompts, max_new_tokens=10, batch_size=4, sync_every=2, cache_impl=cache_impl)
    assert [g.token_ids for g in got] == [g.token_ids for g in expected]
    assert [g.hit_max_new_tokens for g in got] == [g.hit_max_new_tokens for g in expected]


def test_lean_generation_stops_like_generate(engine, monkeypatch):
    """A token that greedy decoding emits early is made a stop token: both paths cut there."""
    prompts = [engine.chat_prompt_ids(s, "Hello") for s in SYSTEMS]
    free = engine.generate(prompts, max_new_tokens=8, batch_size=3)
    stop = free[0].token_ids[2]
    monkeypatch.setattr(engine, "stop_ids", set(engine.stop_ids) | {stop})
    expected = engine.generate(prompts, max_new_tokens=8, batch_size=3)
    assert expected[0].token_ids[-1] == stop and len(expected[0].token_ids) <= 3
    for cache_impl in ("dynamic", "fixed"):
        got = lean_generate(engine, prompts, max_new_tokens=8, batch_size=3, sync_every=1, cache_impl=cache_impl)
        assert [g.token_ids for g in got] == [g.token_ids for g in expected], cache_impl


def test_fixed_width_generation_restores_the_attention_implementation(engine):
    """The fixed-width decode points the model at its own attention only while it runs."""
    before = engine.model.config._attn_implementation
    prompts = [engine.chat_prompt_ids(s, "Hello") for s in SYSTEMS]
    lean_generate(engine, prompts, max_new_tokens=4, batch_size=2, cache_impl="fixed")
    assert engine.model.config._attn_implementation == before
    with pytest.raises(ValueError, match="cache_impl"):
        lean_generate(engine, prompts, max_new_tokens=4, cache_impl="paged")


@pytest.mark.parametrize("generation_cache", ["fixed", "dynamic"])
def test_gpu_resource_generates_through_the_configured_lean_loop(engine, generation_cache):
    """GpuLLM without vLLM uses lean_generate with its `generation_cache` (default: fixed); the
    engine here is the tiny CPU one, so the decode step runs eagerly (no CUDA graph)."""
    from resources.gpu_llm import GpuLLM

    assert GpuLLM.model_fields["generation_cache"].default == "fixed"
    llm = GpuLLM(model="embedded", use_vllm=False, generation_cache=generation_cache)
    llm._engine = engine
    prompts = [engine.chat_prompt_ids(s, q) for s in SYSTEMS for q in QUESTIONS[:1]]
    got = llm.generate(prompts, max_new_tokens=6, batch_size=2)
    assert [g.token_ids for g in got] == [g.token_ids for g in engine.generate(prompts, max_new_tokens=6, batch_size=2)]
