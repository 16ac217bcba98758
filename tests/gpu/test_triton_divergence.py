"""The Triton kernels (log-sum-exp, pair JS/KL) on CUDA against the float64 reference, at the
study's vocabulary sizes, on peaked and flat distributions, from near-identical (JS ~ 1e-8) to
nearly disjoint (JS ~ ln 2) pairs; and against the PyTorch backend on the same device.

Tolerances: the documented contract of `fast_pair_divergences` (≤ 1e-5 relative for JS, ≤ 1e-4
for KL; docs/gpu.md measured ≤ 2.1e-7 on an H200)."""

from __future__ import annotations

import math

import pytest
import torch

from persona_assets.measure.divergence import pair_divergences
from resources.fast_divergence import fast_pair_divergences, row_logsumexp, triton_available
from tests.gpu import ON_GPU

pytestmark = [*ON_GPU, pytest.mark.skipif(not triton_available(), reason="Triton is not importable")]

# (scorer a, scorer b): scorer 0 is the base; 1-4 differ from it by logit noise of growing size
# (JS ~ 1e-7 up to ~0.4); 5 is an independent draw (another argmax where peaked: JS near ln 2).
PAIRS = [(0, 1), (1, 0), (0, 2), (2, 1), (0, 3), (3, 4), (0, 4), (0, 5), (5, 4), (2, 2)]
PERTURBATION = [0.0, 1e-3, 1e-2, 0.3, 3.0]
SPREAD = {"peaked": 8.0, "flat": 0.05}  # logit std: a handful of tokens carry the mass / near uniform


def _logits(kind: str, vocab: int, positions: int = 6, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(1, positions, vocab, generator=gen) * SPREAD[kind]
    scale = torch.tensor(PERTURBATION)[:, None, None]
    near = base + scale * torch.randn(len(PERTURBATION), positions, vocab, generator=gen)
    other = torch.randn(1, positions, vocab, generator=gen) * SPREAD[kind]
    return torch.cat([near, other]).float()


def _max_rel(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.double().cpu(), ref.double().cpu()
    finite = torch.isfinite(ref)
    assert torch.equal(finite, torch.isfinite(out)), "infinities differ"
    return float(((out[finite] - ref[finite]).abs() / ref[finite].abs().clamp_min(1e-300)).max())


@pytest.mark.parametrize("vocab", [49152, 152064])
@pytest.mark.parametrize("kind", ["peaked", "flat"])
def test_triton_pair_kernel_matches_the_float64_reference(kind, vocab):
    logits = _logits(kind, vocab)
    ref = pair_divergences(torch.log_softmax(logits.double(), dim=-1), PAIRS)
    out = fast_pair_divergences(logits.cuda(), PAIRS, backend="triton")
    assert out.js.is_cuda and out.js.dtype == torch.float64 and out.js.shape == (len(PAIRS), logits.shape[1])
    # The cases the test claims to cover: tiny JS (where cancellation bites) and large JS.
    assert float(ref.js[0].max()) < 1e-5 and float(ref.js[0].min()) > 0
    assert float(ref.js[7 if kind == "peaked" else 6].min()) > (0.5 if kind == "peaked" else 0.1)
    real = slice(0, len(PAIRS) - 1)  # the last pair is a scorer with itself: exactly zero
    js, kl_ab, kl_ba = (_max_rel(getattr(out, n)[real], getattr(ref, n)[real]) for n in ("js", "kl_ab", "kl_ba"))
    print(
        f"{kind} V={vocab}: JS {float(ref.js[real].min()):.2e}..{float(ref.js[real].max()):.3f} nats, "
        f"max relative error JS {js:.1e}, KL(a|b) {kl_ab:.1e}, KL(b|a) {kl_ba:.1e}"
    )
    assert js <= 1e-5 and kl_ab <= 1e-4 and kl_ba <= 1e-4
    assert torch.all(out.js[-1] == 0) and torch.all(out.kl_ab[-1] == 0) and torch.all(out.kl_ba[-1] == 0)


@pytest.mark.parametrize("vocab", [49152, 152064])
def test_triton_and_torch_backends_agree_on_the_device(vocab):
    logits = _logits("peaked", vocab, seed=1).cuda()
    triton_out = fast_pair_divergences(logits, PAIRS, backend="triton")
    torch_out = fast_pair_divergences(logits, PAIRS, backend="torch")
    for name in ("js", "kl_ab", "kl_ba"):
        assert _max_rel(getattr(triton_out, name)[:-1], getattr(torch_out, name)[:-1]) <= 1e-5, name


@pytest.mark.parametrize("vocab", [49152, 152064])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_triton_logsumexp_is_float64_accurate(vocab, dtype):
    x = (torch.randn(64, vocab, generator=torch.Generator().manual_seed(4)) * 20).to(dtype)
    lse = row_logsumexp(x.cuda(), backend="triton")
    assert lse.dtype == torch.float64
    torch.testing.assert_close(lse.cpu(), torch.logsumexp(x.double(), -1), atol=1e-5, rtol=0)


def test_triton_zero_probabilities_and_bf16_logits_follow_the_reference():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 4, 49152, generator=gen) * 3
    logits[0, 1, :5000] = -math.inf  # P_0 = 0 on 5,000 tokens at position 1
    logits[1, 2, 100:200] = -math.inf
    pairs = [(0, 1), (1, 0), (0, 2), (1, 2)]
    out = fast_pair_divergences(logits.cuda(), pairs, backend="triton")
    ref = pair_divergences(torch.log_softmax(logits.double(), -1), pairs)
    assert math.isinf(float(ref.kl_ab[1, 1])), "KL(P_1‖P_0) must be infinite where P_0 = 0 < P_1"
    for name in ("js", "kl_ab", "kl_ba"):
        assert _max_rel(getattr(out, name), getattr(ref, name)) <= 1e-5, name
    assert bool(torch.isfinite(out.js).all())
    bf16 = logits.masked_fill(torch.isinf(logits), 0.0).bfloat16()  # what a bf16 LM head hands over
    out16 = fast_pair_divergences(bf16.cuda(), pairs, backend="triton")
    ref16 = pair_divergences(torch.log_softmax(bf16.double(), -1), pairs)
    assert _max_rel(out16.js, ref16.js) <= 1e-5
