"""The per-token pass on CUDA (packed forwards, float32 logits from the GEMM, Triton divergences) against the
divergence step's packed teacher forcing, on a random-weight Qwen2: the last layer's lens is the output."""

from __future__ import annotations

import numpy as np
import pytest

from resources.fast_engine import batch_response_divergences
from resources.token_profile import token_profile_pass
from tests.gpu import ON_GPU
from tests.gpu.token_engine import random_ids

pytestmark = ON_GPU


def _items(vocab: int, n_responses: int = 5, n_scorers: int = 4) -> list[tuple]:
    import torch

    gen = torch.Generator().manual_seed(11)
    items = []
    for r in range(n_responses):
        prompts = [random_ids(gen, int(torch.randint(18, 40, (1,), generator=gen)), vocab) for _ in range(n_scorers)]
        generator = r % n_scorers
        items.append(
            (prompts, random_ids(gen, 20 + 11 * r, vocab), [(generator, k) for k in range(n_scorers) if k != generator])
        )
    return items


@pytest.mark.parametrize("dtype, rtol", [("float32", 1e-4), ("bfloat16", 2e-2)])
def test_last_layer_lens_is_the_packed_teacher_forcing(engines, dtype, rtol):
    engine = engines(dtype)
    items = _items(int(engine.vocab_size))
    expected = batch_response_divergences(engine, items)
    profiles = token_profile_pass(engine, items, [1], top_k=8, max_batch_tokens=2048)
    for item, want, got in zip(items, expected, profiles):
        assert got.layers == [1, 2]
        # Response means (what the check compares); per token in float32 too.
        np.testing.assert_allclose(got.output_js.mean(axis=1), want.js.mean(dim=1).cpu().numpy(), rtol=rtol)
        if dtype == "float32":
            np.testing.assert_allclose(got.output_js, want.js.cpu().numpy(), rtol=1e-4, atol=1e-6)
        # The vocabulary vector sums to Σ_t KL (float64 terms against the fused kernel's KL).
        np.testing.assert_allclose(got.term_sum_ab, got.lens_kl_ab[-1].sum(axis=1), rtol=1e-5)
        np.testing.assert_allclose(got.term_sum_ba, got.lens_kl_ba[-1].sum(axis=1), rtol=1e-5)
        assert np.isfinite(got.lens_js).all() and (got.lens_js[0] != got.lens_js[1]).any()
