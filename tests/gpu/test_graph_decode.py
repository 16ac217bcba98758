"""The fixed-width decode with its step captured as a CUDA graph (`lean_generate(cache_impl="fixed")`,
what GpuLLM generates with) yields exactly the tokens of transformers' `generate()` run under the
same SDPA kernel (memory-efficient: `width_invariant_attention`), on a random-weight Qwen2 in
float32 and bfloat16, including sequences that stop early."""

from __future__ import annotations

import pytest
import torch

from resources.lean_generation import lean_generate, width_invariant_attention
from tests.gpu import ON_GPU
from tests.gpu.token_engine import random_ids

pytestmark = ON_GPU


def _prompts(vocab: int, n: int = 12) -> list[list[int]]:
    gen = torch.Generator().manual_seed(5)
    return [random_ids(gen, int(torch.randint(8, 48, (1,), generator=gen)), vocab) for _ in range(n)]


def _generate(engine, prompts, max_new_tokens: int, batch_size: int | None = None):
    with width_invariant_attention(engine.device):
        return engine.generate(prompts, max_new_tokens=max_new_tokens, batch_size=batch_size or len(prompts))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_graph_decode_yields_the_tokens_of_generate(engines, dtype):
    engine = engines(dtype)
    prompts = _prompts(engine.vocab_size)
    assert len({len(p) for p in prompts}) > 4, "different prompt lengths exercise the left padding"
    expected = _generate(engine, prompts, 64)
    got = lean_generate(engine, prompts, max_new_tokens=64, batch_size=len(prompts), cache_impl="fixed")
    same = sum(g.token_ids == e.token_ids for g, e in zip(got, expected))
    print(f"{dtype}: {same}/{len(prompts)} identical token sequences over 64 steps")
    assert [g.token_ids for g in got] == [e.token_ids for e in expected]
    assert [g.hit_max_new_tokens for g in got] == [e.hit_max_new_tokens for e in expected]
    # Several batches (and so several graph captures of other widths) give the same tokens.
    split = lean_generate(engine, prompts, max_new_tokens=64, batch_size=5, cache_impl="fixed")
    assert [g.token_ids for g in split] == [e.token_ids for e in _generate(engine, prompts, 64, batch_size=5)]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_graph_decode_stops_where_generate_stops(engines, monkeypatch, dtype):
    engine = engines(dtype)
    prompts = _prompts(engine.vocab_size, 6)
    free = _generate(engine, prompts, 24)
    stop = free[0].token_ids[5]  # a token greedy decoding emits early becomes a stop token
    monkeypatch.setattr(engine, "stop_ids", set(engine.stop_ids) | {stop})
    expected = _generate(engine, prompts, 24)
    assert expected[0].token_ids[-1] == stop and not expected[0].hit_max_new_tokens
    got = lean_generate(engine, prompts, max_new_tokens=24, batch_size=6, sync_every=4, cache_impl="fixed")
    assert [g.token_ids for g in got] == [e.token_ids for e in expected]
    assert [g.hit_max_new_tokens for g in got] == [e.hit_max_new_tokens for e in expected]
