"""The fast divergence path (PyTorch backend; the Triton kernel on CUDA) vs the float64 reference.

The Triton cases are always collected: marked `gpu`, they run where CUDA and Triton are, and
show as skipped elsewhere (tests/gpu/test_triton_divergence.py covers the study's vocabularies)."""

from __future__ import annotations

import math

import pytest
import torch

from persona_assets.measure.divergence import pair_divergences
from resources.fast_divergence import fast_pair_divergences, row_logsumexp, triton_available

TRITON_ON_CUDA = triton_available() and torch.cuda.is_available()
BACKENDS = [
    "torch",
    pytest.param(
        "triton", marks=[pytest.mark.gpu, pytest.mark.skipif(not TRITON_ON_CUDA, reason="needs CUDA and Triton")]
    ),
]


def _on(backend: str, tensor: torch.Tensor) -> torch.Tensor:
    """The Triton kernels read device memory: their inputs go to the GPU."""
    return tensor.cuda() if backend == "triton" else tensor


def _max_rel(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.cpu(), ref.cpu()
    finite = torch.isfinite(ref)
    assert torch.equal(finite, torch.isfinite(out)), "infinities differ"
    return float(((out[finite] - ref[finite]).abs() / ref[finite].abs().clamp_min(1e-300)).max())


def _reference(logits: torch.Tensor, pairs):
    return pair_divergences(torch.log_softmax(logits.double(), dim=-1), pairs)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_float64_reference_including_near_identical_rows(backend, seed):
    gen = torch.Generator().manual_seed(seed)
    scorers, positions, vocab = 5, 6, 5000
    base = torch.randn(1, positions, vocab, generator=gen) * 3
    # rows 1 and 2 differ from row 0 by tiny perturbations: JS ~1e-8..1e-5, where cancellation bites
    scale = torch.tensor([0.0, 1e-3, 1e-2, 0.3, 2.0])[:, None, None]
    logits = (base + scale * torch.randn(scorers, positions, vocab, generator=gen)).float()
    pairs = [(0, 1), (1, 0), (0, 2), (1, 2), (0, 3), (3, 4), (2, 2)]
    out = fast_pair_divergences(_on(backend, logits), pairs, backend=backend, vocab_block=1024)
    ref = _reference(logits, pairs)
    assert out.js.shape == (len(pairs), positions) and out.js.dtype == torch.float64
    assert float(ref.js[0].max()) < 1e-5, "the test must cover near-identical distributions"
    assert _max_rel(out.js[:-1], ref.js[:-1]) <= 1e-5
    assert _max_rel(out.kl_ab[:-1], ref.kl_ab[:-1]) <= 1e-4
    assert _max_rel(out.kl_ba[:-1], ref.kl_ba[:-1]) <= 1e-4
    assert torch.all(out.js[-1] == 0) and torch.all(out.kl_ab[-1] == 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_probabilities_follow_the_reference_conventions(backend):
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 4, 300, generator=gen)
    logits[0, 1, :50] = -math.inf  # P_0 = 0 on 50 tokens at position 1
    logits[1, 2, 10:20] = -math.inf
    pairs = [(0, 1), (1, 0), (0, 2), (1, 2)]
    out = fast_pair_divergences(_on(backend, logits), pairs, backend=backend, vocab_block=128)
    ref = _reference(logits, pairs)
    assert math.isinf(float(ref.kl_ab[1, 1])), "KL(P_1‖P_0) must be infinite where P_0 = 0 < P_1"
    for name in ("js", "kl_ab", "kl_ba"):
        assert _max_rel(getattr(out, name), getattr(ref, name)) <= 1e-5
    assert bool(torch.isfinite(out.js).all())


def test_log_probs_and_bf16_logits_are_accepted():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 5, 700, generator=gen).bfloat16()
    pairs = [(0, 1), (2, 1)]
    from_bf16 = fast_pair_divergences(logits, pairs)
    from_logp = fast_pair_divergences(torch.log_softmax(logits.double(), -1), pairs)
    ref = _reference(logits.float(), pairs)
    assert _max_rel(from_bf16.js, ref.js) <= 1e-5
    assert _max_rel(from_logp.js, ref.js) <= 1e-5


def test_row_logsumexp_is_float64_accurate():
    x = torch.randn(7, 3000, generator=torch.Generator().manual_seed(4)) * 20
    lse = row_logsumexp(x, backend="torch", block=512)
    assert lse.dtype == torch.float64
    torch.testing.assert_close(lse, torch.logsumexp(x.double(), -1), atol=1e-5, rtol=0)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match=r"\[S, T, V\]"):
        fast_pair_divergences(torch.zeros(3, 4), [(0, 1)])
    with pytest.raises(IndexError):
        fast_pair_divergences(torch.zeros(2, 3, 4), [(0, 2)])
    with pytest.raises(ValueError, match="backend"):
        fast_pair_divergences(torch.zeros(2, 3, 4), [(0, 1)], backend="cuda-magic")
