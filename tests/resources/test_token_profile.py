"""The per-token pass on a tiny random-weight Llama: lens at the last layer = output, vocabulary terms sum to KL."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from persona_assets.measure.divergence import pair_divergences
from persona_assets.runs.errors import InputError
from resources.hf_engine import HFEngine
from resources.token_profile import lens_layers, token_profile_pass, vocabulary_terms


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return HFEngine.load(str(tiny_model_dir))


@pytest.fixture(scope="module")
def items(engine):
    prompts = [engine.chat_prompt_ids(s, "What is rain?") for s in ("You are a pirate.", "You are a judge.", "Hi.")]
    return [
        (prompts, [100, 200, 300, 400, 500], [(0, 1), (0, 2)]),
        (prompts[1:], [7, 8, 9], [(0, 1)]),
    ]


@pytest.mark.parametrize("shared_prefixes", [False, True])
def test_last_layer_lens_is_the_output_divergence(engine, items, shared_prefixes):
    # Two items packed into one forward, and apart: the divergence step's per-token values either way.
    for max_batch_tokens in (1, 4096):
        profiles = token_profile_pass(
            engine, items, [1], top_k=5, max_batch_tokens=max_batch_tokens, shared_prefixes=shared_prefixes
        )
        for (prompts, response, pairs), profile in zip(items, profiles):
            expected = pair_divergences(engine.response_logits(prompts, response), pairs)
            assert profile.layers == [1, 2]
            assert profile.lens_js.shape == (2, len(pairs), len(response))
            np.testing.assert_allclose(profile.output_js, expected.js.numpy(), rtol=1e-5, atol=1e-9)
            np.testing.assert_allclose(profile.lens_kl_ab[-1], expected.kl_ab.numpy(), rtol=1e-5, atol=1e-9)
            np.testing.assert_allclose(profile.lens_kl_ba[-1], expected.kl_ba.numpy(), rtol=1e-5, atol=1e-9)
            # The vocabulary vector sums to Σ_t KL, and its top entries are the largest.
            np.testing.assert_allclose(profile.term_sum_ab, profile.lens_kl_ab[-1].sum(axis=1), rtol=1e-9)
            np.testing.assert_allclose(profile.term_sum_ba, profile.lens_kl_ba[-1].sum(axis=1), rtol=1e-9)
            assert np.all(np.diff(profile.top_values_ab, axis=1) <= 0)


@pytest.mark.parametrize("shared_prefixes", [False, True])
def test_lens_at_an_inner_layer_is_the_final_norm_and_head_of_that_layer(engine, items, shared_prefixes):
    prompts, response, pairs = items[0]
    profile = token_profile_pass(engine, items, [1], top_k=3, shared_prefixes=shared_prefixes)[0]
    sequences = [list(p) + response[:-1] for p in prompts]
    with torch.inference_mode():
        js = []
        for seq, prompt in zip(sequences, prompts):
            hidden = engine.model.model(input_ids=torch.tensor([seq]), output_hidden_states=True).hidden_states[1][0]
            start = len(prompt) - 1
            js.append(engine.model.lm_head(engine.model.model.norm(hidden[start : start + len(response)])))
        expected = pair_divergences(torch.stack(js).float(), pairs)
    np.testing.assert_allclose(profile.lens_js[0], expected.js.numpy(), rtol=1e-5, atol=1e-9)
    # An inner layer's distributions differ from the output's.
    assert not np.allclose(profile.lens_js[0], profile.lens_js[1])


def test_vocabulary_terms_sum_to_kl_known_answer():
    # Two tokens: P_a = (3/4, 1/4), P_b = (1/4, 3/4): KL(a‖b) = ½·ln 3 per position, terms (3/4·ln 3, −1/4·ln 3).
    a = torch.log(torch.tensor([[0.75, 0.25]] * 3))
    b = torch.log(torch.tensor([[0.25, 0.75]] * 3))
    ab, ba = vocabulary_terms(torch.stack([a, b, a]), [(0, 1), (0, 2)], block=2)
    np.testing.assert_allclose(ab[0].numpy(), [3 * 0.75 * np.log(3), -3 * 0.25 * np.log(3)], rtol=1e-6)
    np.testing.assert_allclose(ab[0].sum().item(), 3 * 0.5 * np.log(3), rtol=1e-6)
    np.testing.assert_allclose(ba[0].numpy(), ab[0].numpy()[::-1], rtol=1e-6)
    assert torch.all(ab[1] == 0) and torch.all(ba[1] == 0)  # a pair of equal distributions


def test_lens_layers_checked_against_the_model():
    assert lens_layers([3, 1, 3], 4) == [1, 3, 4]
    with pytest.raises(InputError, match="1..4"):
        lens_layers([0, 5], 4)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    scorers=st.integers(2, 4),
    positions=st.integers(1, 7),
    vocab=st.integers(2, 40),
    scale=st.floats(0.01, 8.0),
    block=st.integers(1, 5),
)
def test_vocabulary_terms_sum_to_the_reference_kl(seed, scorers, positions, vocab, scale, block):
    """Property: every pair's vocabulary vector sums to Σ_t KL of the float64 reference, both directions."""
    generator = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn((scorers, positions, vocab), generator=generator)
    pairs = [(a, b) for a in range(scorers) for b in range(scorers) if a != b][:5]
    ab, ba = vocabulary_terms(logits, pairs, block=block)
    reference = pair_divergences(logits, pairs)
    np.testing.assert_allclose(ab.sum(dim=1).numpy(), reference.kl_ab.sum(dim=1).numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ba.sum(dim=1).numpy(), reference.kl_ba.sum(dim=1).numpy(), rtol=1e-9, atol=1e-12)
