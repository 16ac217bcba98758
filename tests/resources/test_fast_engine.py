"""Batched teacher forcing on a tiny random Llama, against HFEngine one response at a time."""

from __future__ import annotations

import pytest
import torch

from persona_assets.measure.divergence import pair_divergences
from resources.fast_engine import batch_response_divergences, pack_items
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
