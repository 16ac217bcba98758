"""The transformers engine on a tiny real-architecture model: scoring, generation, hidden states."""

from __future__ import annotations

import pytest
import torch

from resources.hf_engine import HFEngine

SYSTEMS = ["You are a pirate.", "You are a careful medical doctor who explains things slowly.", "Be brief."]


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return HFEngine.load(str(tiny_model_dir))


def test_prompt_contains_system_prompt_and_generation_prompt(engine):
    ids = engine.chat_prompt_ids("You are a pirate.", "Hello?")
    text = engine.tokenizer.decode(ids)
    assert "You are a pirate." in text and "Hello?" in text
    assert text.rstrip().endswith("assistant")


def test_batched_scoring_matches_one_sequence_at_a_time(engine):
    """Right padding must not change log-probs at real positions beyond float32 kernel noise."""
    prompts = [engine.chat_prompt_ids(s, "What is the moon made of?") for s in SYSTEMS]
    assert len({len(p) for p in prompts}) > 1, "prompts of different lengths exercise the padding"
    response = engine.generate([prompts[0]], max_new_tokens=12)[0].token_ids
    batched = engine.response_logprobs(prompts, response)
    assert batched.shape == (len(SYSTEMS), len(response), engine.vocab_size)
    for row, prompt in enumerate(prompts):
        single = engine.full_forward_logprobs(prompt, response)
        # float32 matmuls of different shapes round differently; 1e-4 nats is far below any
        # persona difference we report (JS values are ≥ 1e-3 here).
        torch.testing.assert_close(batched[row], single, atol=1e-4, rtol=0)


def test_logprobs_are_normalised_float32(engine):
    prompts = [engine.chat_prompt_ids(s, "Hi") for s in SYSTEMS[:2]]
    logp = engine.response_logprobs(prompts, [42, 43, 44])
    assert logp.dtype == torch.float32
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(2, 3), atol=1e-4, rtol=0)


def test_greedy_generation_is_argmax_of_teacher_forced_distribution(engine):
    """Generated ids round-trip: teacher-forcing them reproduces each greedy choice."""
    prompt = engine.chat_prompt_ids(SYSTEMS[1], "Tell me a story.")
    generated = engine.generate([prompt], max_new_tokens=10)[0]
    assert 0 < len(generated.token_ids) <= 10
    logp = engine.full_forward_logprobs(prompt, generated.token_ids)
    assert logp.argmax(-1).tolist() == generated.token_ids


def test_batched_generation_matches_single(engine):
    prompts = [engine.chat_prompt_ids(s, "Name a colour.") for s in SYSTEMS]
    together = engine.generate(prompts, max_new_tokens=8, batch_size=3)
    alone = [engine.generate([p], max_new_tokens=8)[0] for p in prompts]
    assert [g.token_ids for g in together] == [g.token_ids for g in alone]


def test_stop_token_ends_response_and_is_kept(engine):
    generation = engine._cut_at_stop([5, 6, next(iter(engine.stop_ids)), 7], max_new_tokens=10)
    assert generation.token_ids[-1] in engine.stop_ids and len(generation.token_ids) == 3
    assert not generation.hit_max_new_tokens
    capped = engine._cut_at_stop([5, 6, 7], max_new_tokens=3)
    assert capped.hit_max_new_tokens


def test_hidden_states_pick_last_prompt_token_per_layer(engine):
    prompts = [engine.chat_prompt_ids(s, "Hi") for s in SYSTEMS]
    states = engine.last_prompt_hidden_states(prompts, [0, 1, 2], batch_size=2)
    assert states.shape == (3, 3, engine.model.config.hidden_size)
    # Layer 0 is the embedding of the last prompt token, identical for all prompts (same template end).
    embedding = engine.model.get_input_embeddings().weight[prompts[0][-1]].float()
    torch.testing.assert_close(states[1, 0], embedding)
    alone = engine.last_prompt_hidden_states([prompts[2]], [2])
    torch.testing.assert_close(states[2, 2], alone[0, 0], atol=1e-4, rtol=0)


def test_layer_beyond_depth_is_rejected(engine):
    from persona_assets.runs.errors import InputError

    with pytest.raises(InputError, match="layers 0..2"):
        engine.last_prompt_hidden_states([[1, 2, 3]], [5])
