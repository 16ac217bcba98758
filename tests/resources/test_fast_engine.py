"""Batched teacher forcing and the lean decode loop on a tiny random Llama, against HFEngine."""

from __future__ import annotations

import pytest
import torch

from persona_assets.core.divergence import pair_divergences
from resources.fast_engine import batch_response_divergences, lean_generate, pack_items
from resources.hf_engine import HFEngine

SYSTEMS = ["You are a pirate.", "You are a careful medical doctor who explains things slowly.", "Be brief."]
QUESTIONS = ["What is the moon made of?", "Tell me a story.", "Name a colour."]


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return HFEngine.load(str(tiny_model_dir))


def test_pack_items_bounds_batches_and_keeps_every_item():
    lengths = [(12, 500), (12, 100), (12, 480), (12, 90), (12, 300)]
    batches = pack_items(lengths, max_batch_tokens=12 * 500)
    assert sorted(i for b in batches for i in b) == list(range(5))
    for batch in batches:
        width = max(lengths[i][1] for i in batch)
        assert len(batch) == 1 or sum(lengths[i][0] for i in batch) * width <= 12 * 500
    assert [3, 1] in batches, "short items are packed together, shortest first"


def test_batched_divergences_match_one_response_at_a_time(engine):
    prompts = [[engine.chat_prompt_ids(s, q) for s in SYSTEMS] for q in QUESTIONS]
    responses = [engine.generate([p[0]], max_new_tokens=9 + 3 * k)[0].token_ids for k, p in enumerate(prompts)]
    pairs = [[(0, 1), (0, 2)], [(1, 0), (1, 2)], [(0, 1), (0, 2), (1, 2)]]
    items = list(zip(prompts, responses, pairs))
    # a batch bound that packs two responses together and leaves one alone
    fast = batch_response_divergences(engine, items, max_batch_tokens=6 * 70)
    assert len(fast) == 3
    for (p, r, pr), got in zip(items, fast):
        ref = pair_divergences(engine.response_logprobs(p, r), pr)
        assert got.js.shape == (len(pr), len(r))
        for name in ("js", "kl_ab", "kl_ba"):
            # same model, other batch shapes: float32 kernel noise only (values are ~1e-2..1)
            torch.testing.assert_close(getattr(got, name), getattr(ref, name), rtol=1e-4, atol=1e-6)


def test_packed_forward_skips_the_packed_sequence_check_and_restores_it(engine, monkeypatch):
    """transformers' check for packed rows syncs the device once per forward; the packed teacher
    forcing (one sequence per row) skips it, and only within its forward."""
    from transformers import masking_utils

    calls = []
    original = masking_utils.find_packed_sequence_indices

    def spy(position_ids):
        calls.append(tuple(position_ids.shape))
        return original(position_ids)

    monkeypatch.setattr(masking_utils, "find_packed_sequence_indices", spy)
    prompts = [engine.chat_prompt_ids(s, QUESTIONS[0]) for s in SYSTEMS]
    batch_response_divergences(engine, [(prompts, [101, 102, 103], [(0, 1)])])
    assert calls == []
    assert masking_utils.find_packed_sequence_indices is spy
    with torch.inference_mode():  # outside it, a forward without mask and cache still gets the check
        engine._decoder()(input_ids=torch.tensor([[101, 102, 103]]), use_cache=False)
    assert calls == [(1, 3)]


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
    from resources.llm import GpuLLM

    assert GpuLLM.model_fields["generation_cache"].default == "fixed"
    llm = GpuLLM(model="embedded", use_vllm=False, generation_cache=generation_cache)
    llm._engine = engine
    prompts = [engine.chat_prompt_ids(s, q) for s in SYSTEMS for q in QUESTIONS[:1]]
    got = llm.generate(prompts, max_new_tokens=6, batch_size=2)
    assert [g.token_ids for g in got] == [g.token_ids for g in engine.generate(prompts, max_new_tokens=6, batch_size=2)]
