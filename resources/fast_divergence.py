"""Fast per-token JS / KL between scorer pairs, from logits, in float32 with bounded memory.

The float64 reference (`persona_assets.measure.divergence.pair_divergences`) converts a whole
[chunk, T, V] block to float64 and is far too slow on a GPU for 152k-token vocabularies. This
module computes the same three quantities from raw logits [S, T, V] (any float dtype):

1. a log-sum-exp pass per row (S·T rows), blockwise over the vocabulary: float32 inside a
   block, float64 across blocks, result float64;
2. a pair pass: for every (pair, position), blockwise over the vocabulary, the per-token terms
   in float32, summed in float32 inside a block and in float64 across blocks.

On CUDA both passes are Triton kernels (imported lazily: Triton ships with CUDA builds of
torch); elsewhere the same arithmetic runs in PyTorch (`backend="torch"`), which CI uses and
which the GPU benchmark cross-checks against the kernel.

Numerics (why float32 terms are enough). With t = log P_b − log P_a per token, every term used
here is non-negative, so the vocabulary sums never cancel:
  KL(a‖b) = Σ P_a·φ(t),  φ(t) = e^t − 1 − t ≥ 0   (uses Σ P_b − Σ P_a = 0)
  KL(b‖a) = Σ P_b·φ(−t)
  JS      = Σ M·h(t),     h(t) = u·tanh(u) − log cosh(u), u = t/2, M = ½(P_a + P_b)
φ and h are evaluated by their Taylor series for |t| < ½ (where the closed forms cancel) and in
closed form beyond. The difference-of-entropies form, or ln 2 − softplus(t), loses all digits
for near-identical distributions (JS ~ 1e-5) in float32; these forms keep about 1e-6 relative.
A per-row log-sum-exp error shifts t by a constant; the generalized-KL form above absorbs that
to first order (the direct form −Σ P_a·t would not). t itself is formed as
(x_b − x_a) − (lse_b − lse_a), exact for close logits.

Zero probabilities (logit −inf) follow the reference's conventions: 0·log 0 = 0, KL = +inf
where P_a > 0 = P_b, JS finite.

No dagster import.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from persona_assets.measure.divergence import TokenDivergences, pair_index
from persona_assets.measure.scoring_faults import raise_if_non_finite

from persona_assets.constants import LN2  # noqa: E402

__all__ = ["fast_pair_divergences", "row_logsumexp", "to_device", "triton_available"]

# Taylor coefficients (in t) of φ(t) = e^t − 1 − t, from t² on: 1/k!.
_PHI = [1.0 / math.factorial(k) for k in range(2, 10)]
# Taylor coefficients (in t) of h(t) = u·tanh u − log cosh u with u = t/2, from t² on (even powers).
_H = [1 / 8, -1 / 64, 1 / 576, -17 / 92160, 31 / 1612800, -691 / 348364800]
_SMALL = 0.5  # |t| below which the series are used


def to_device(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Copy a host tensor to `device`; to CUDA through pinned memory, without waiting for the GPU.

    Why: a copy from pageable memory makes the host wait (torch synchronises a blocking copy; for
    a `non_blocking` one CUDA may stage it behind all queued work), so every such copy would let the
    GPU run dry before the host launches the next kernels. torch's pinned-memory pool keeps a
    pinned block until the copy that reads it has run, so the host tensor may go at once.
    """
    if torch.device(device).type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------- PyTorch implementation
def _phi_series(t: torch.Tensor) -> torch.Tensor:
    acc = torch.full_like(t, _PHI[-1])
    for c in reversed(_PHI[:-1]):
        acc = acc * t + c
    return acc * t * t


def _h_series(t: torch.Tensor) -> torch.Tensor:
    t2 = t * t
    acc = torch.full_like(t, _H[-1])
    for c in reversed(_H[:-1]):
        acc = acc * t2 + c
    return acc * t2


def _terms(xa: torch.Tensor, xb: torch.Tensor, lse_a: torch.Tensor, lse_b: torch.Tensor):
    """Per-token float32 terms (js, kl_ab, kl_ba) for logits blocks xa, xb [..., B]; lse float64 [..., 1]."""
    xa = xa.float()
    xb = xb.float()
    la = (xa.double() - lse_a).float()
    lb = (xb.double() - lse_b).float()
    a_zero = torch.isneginf(xa)
    b_zero = torch.isneginf(xb)
    any_zero = a_zero | b_zero
    pa = la.exp()
    pb = lb.exp()
    dl = (lse_b - lse_a).float()
    t = torch.where(any_zero, torch.zeros_like(xa), (xb - xa) - dl)
    at = t.abs()
    small = at < _SMALL
    kl_ab = torch.where(small, pa * _phi_series(t), (pb - pa) - pa * t)
    kl_ba = torch.where(small, pb * _phi_series(-t), (pa - pb) + pb * t)
    e = torch.exp(-at)
    h_big = (LN2 - torch.log1p(e)) - at * (e / (1.0 + e))
    h = torch.where(small, _h_series(t), h_big)
    m = 0.5 * (pa + pb)
    js = m * h
    inf = torch.full_like(xa, math.inf)
    kl_ab = torch.where(a_zero, pb, torch.where(b_zero, inf, kl_ab))
    kl_ba = torch.where(b_zero, pa, torch.where(a_zero, inf, kl_ba))
    js = torch.where(any_zero, m * LN2, js)
    return js, kl_ab, kl_ba


def _row_logsumexp_torch(x: torch.Tensor, block: int) -> torch.Tensor:
    """log Σ exp over the last axis of x [N, V]: float32 per block, float64 across blocks."""
    rows, vocab = x.shape
    row_max = x.amax(dim=-1).float()  # exact
    safe_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    total = torch.zeros(rows, dtype=torch.float64, device=x.device)
    for v0 in range(0, vocab, block):
        part = torch.exp(x[:, v0 : v0 + block].float() - safe_max[:, None])
        total += part.sum(dim=-1).double()
    return safe_max.double() + total.log()


def _pairs_torch(
    logits: torch.Tensor, lse: torch.Tensor, index: torch.Tensor, block: int, pair_chunk: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    _, positions, vocab = logits.shape
    num_pairs = index.shape[0]
    out = torch.zeros(3, num_pairs, positions, dtype=torch.float64, device=logits.device)
    for p0 in range(0, num_pairs, pair_chunk):
        chunk = index[p0 : p0 + pair_chunk]
        ia, ib = chunk[:, 0], chunk[:, 1]
        lse_a = lse[ia][..., None]
        lse_b = lse[ib][..., None]
        for v0 in range(0, vocab, block):
            xa = logits[ia, :, v0 : v0 + block]
            xb = logits[ib, :, v0 : v0 + block]
            for k, term in enumerate(_terms(xa, xb, lse_a, lse_b)):
                out[k, p0 : p0 + chunk.shape[0]] += term.sum(dim=-1).double()
    return out[0], out[1], out[2]


# ------------------------------------------------------------------ Triton implementation
_KERNELS: dict[str, object] = {}


def _triton_kernels() -> dict[str, object]:
    if _KERNELS:
        return _KERNELS
    import triton
    import triton.language as tl

    @triton.jit
    def _lse_kernel(x_ptr, out_ptr, V, stride_row, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        base = x_ptr + row * stride_row
        offs = tl.arange(0, BLOCK)
        run_max = tl.full([BLOCK], float("-inf"), tl.float32)
        for v0 in range(0, V, BLOCK):
            x = tl.load(base + v0 + offs, mask=v0 + offs < V, other=float("-inf")).to(tl.float32)
            run_max = tl.maximum(run_max, x)
        row_max = tl.max(run_max, axis=0)
        row_max = tl.where(row_max == float("-inf"), 0.0, row_max)
        total = tl.zeros([1], tl.float64)
        for v0 in range(0, V, BLOCK):
            x = tl.load(base + v0 + offs, mask=v0 + offs < V, other=float("-inf")).to(tl.float32)
            s = tl.sum(tl.exp(x - row_max), axis=0)
            total += s.to(tl.float64)
        lse = row_max.to(tl.float64) + tl.log(total)
        tl.store(out_ptr + row + tl.arange(0, 1), lse)

    # T, P and the scorer stride change with every response: compiling a variant for each
    # divisibility class of them would recompile mid-run.
    @triton.jit(do_not_specialize=["T", "P", "stride_s"])
    def _pair_kernel(
        x_ptr,
        lse_ptr,
        ia_ptr,
        ib_ptr,
        out_ptr,
        V,
        T,
        P,
        stride_s,
        stride_t,
        BLOCK: tl.constexpr,
        LANE_ACC: tl.constexpr,
    ):
        pid = tl.program_id(0)
        t_pos = pid // P
        p = pid % P
        ia = tl.load(ia_ptr + p).to(tl.int64)
        ib = tl.load(ib_ptr + p).to(tl.int64)
        row_a = x_ptr + ia * stride_s + t_pos.to(tl.int64) * stride_t
        row_b = x_ptr + ib * stride_s + t_pos.to(tl.int64) * stride_t
        lse_a = tl.load(lse_ptr + ia * T + t_pos)
        lse_b = tl.load(lse_ptr + ib * T + t_pos)
        dl = (lse_b - lse_a).to(tl.float32)
        offs = tl.arange(0, BLOCK)
        # LANE_ACC: float64 accumulators per lane, one reduction at the end; else a float32
        # reduction per block added to float64 scalars.
        acc_ab = tl.zeros([BLOCK if LANE_ACC else 1], tl.float64)
        acc_ba = tl.zeros([BLOCK if LANE_ACC else 1], tl.float64)
        acc_js = tl.zeros([BLOCK if LANE_ACC else 1], tl.float64)
        for v0 in range(0, V, BLOCK):
            mask = v0 + offs < V
            xa = tl.load(row_a + v0 + offs, mask=mask, other=float("-inf")).to(tl.float32)
            xb = tl.load(row_b + v0 + offs, mask=mask, other=float("-inf")).to(tl.float32)
            la = (xa.to(tl.float64) - lse_a).to(tl.float32)
            lb = (xb.to(tl.float64) - lse_b).to(tl.float32)
            a_zero = xa == float("-inf")
            b_zero = xb == float("-inf")
            any_zero = a_zero | b_zero
            pa = tl.exp(la)
            pb = tl.exp(lb)
            t = tl.where(any_zero, 0.0, (xb - xa) - dl)
            at = tl.abs(t)
            small = at < 0.5
            # φ(t) and φ(−t) by Horner (coefficients 1/k!, k = 2..9)
            ph = 2.755731922398589e-06
            ph = ph * t + 2.48015873015873e-05
            ph = ph * t + 0.0001984126984126984
            ph = ph * t + 0.001388888888888889
            ph = ph * t + 0.008333333333333333
            ph = ph * t + 0.041666666666666664
            ph = ph * t + 0.16666666666666666
            ph = ph * t + 0.5
            ph = ph * t * t
            nt = -t
            pn = 2.755731922398589e-06
            pn = pn * nt + 2.48015873015873e-05
            pn = pn * nt + 0.0001984126984126984
            pn = pn * nt + 0.001388888888888889
            pn = pn * nt + 0.008333333333333333
            pn = pn * nt + 0.041666666666666664
            pn = pn * nt + 0.16666666666666666
            pn = pn * nt + 0.5
            pn = pn * nt * nt
            kl_ab = tl.where(small, pa * ph, (pb - pa) - pa * t)
            kl_ba = tl.where(small, pb * pn, (pa - pb) + pb * t)
            t2 = t * t
            hs = -1.983526064814815e-06
            hs = hs * t2 + 1.9221230158730158e-05
            hs = hs * t2 - 0.00018446180555555556
            hs = hs * t2 + 0.001736111111111111
            hs = hs * t2 - 0.015625
            hs = hs * t2 + 0.125
            hs = hs * t2
            e = tl.exp(-at)
            hb = (0.6931471805599453 - tl.log(1.0 + e)) - at * (e / (1.0 + e))
            m = 0.5 * (pa + pb)
            js = m * tl.where(small, hs, hb)
            kl_ab = tl.where(a_zero, pb, tl.where(b_zero, float("inf"), kl_ab))
            kl_ba = tl.where(b_zero, pa, tl.where(a_zero, float("inf"), kl_ba))
            js = tl.where(any_zero, m * 0.6931471805599453, js)
            if LANE_ACC:
                acc_ab += kl_ab.to(tl.float64)
                acc_ba += kl_ba.to(tl.float64)
                acc_js += js.to(tl.float64)
            else:
                acc_ab += tl.sum(kl_ab, axis=0).to(tl.float64)
                acc_ba += tl.sum(kl_ba, axis=0).to(tl.float64)
                acc_js += tl.sum(js, axis=0).to(tl.float64)
        out = p * T + t_pos + tl.arange(0, 1)
        tl.store(out_ptr + out, tl.sum(acc_js, axis=0) + tl.zeros([1], tl.float64))
        tl.store(out_ptr + P * T + out, tl.sum(acc_ab, axis=0) + tl.zeros([1], tl.float64))
        tl.store(out_ptr + 2 * P * T + out, tl.sum(acc_ba, axis=0) + tl.zeros([1], tl.float64))

    _KERNELS["lse"] = _lse_kernel
    _KERNELS["pair"] = _pair_kernel
    return _KERNELS


def _row_logsumexp_triton(x: torch.Tensor, block: int) -> torch.Tensor:
    rows, vocab = x.shape
    out = torch.empty(rows, dtype=torch.float64, device=x.device)
    _triton_kernels()["lse"][(rows,)](x, out, vocab, x.stride(0), BLOCK=block, num_warps=8)
    return out


def _pairs_triton(
    logits: torch.Tensor, lse: torch.Tensor, index: torch.Tensor, block: int, lane_acc: bool = False, num_warps: int = 8
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    scorers, positions, vocab = logits.shape
    num_pairs = index.shape[0]
    out = torch.empty(3, num_pairs, positions, dtype=torch.float64, device=logits.device)
    if num_pairs and positions:
        ia = index[:, 0].contiguous().to(torch.int32)
        ib = index[:, 1].contiguous().to(torch.int32)
        grid = (positions * num_pairs,)
        _triton_kernels()["pair"][grid](
            logits,
            lse.contiguous(),
            ia,
            ib,
            out,
            vocab,
            positions,
            num_pairs,
            logits.stride(0),
            logits.stride(1),
            BLOCK=block,
            LANE_ACC=lane_acc,
            num_warps=num_warps,
        )
    return out[0], out[1], out[2]


# ------------------------------------------------------------------------------ public API
def row_logsumexp(x: torch.Tensor, *, backend: str = "auto", block: int | None = None) -> torch.Tensor:
    """float64 log-sum-exp over the last axis of a [N, V] tensor (fp32 per block, fp64 across)."""
    if x.ndim != 2:
        raise ValueError(f"x must be [N, V], got {tuple(x.shape)}")
    if x.stride(-1) != 1:
        x = x.contiguous()
    if _resolve(backend, x) == "triton":
        return _row_logsumexp_triton(x, block or 4096)
    return _row_logsumexp_torch(x, block or 8192)


def _resolve(backend: str, x: torch.Tensor) -> str:
    if backend not in ("auto", "torch", "triton"):
        raise ValueError(f"backend must be auto | torch | triton, got {backend!r}")
    if backend == "auto":
        return "triton" if x.is_cuda and triton_available() else "torch"
    return backend


@torch.no_grad()
def fast_pair_divergences(
    logits: torch.Tensor,
    pairs: Sequence[tuple[int, int]] | torch.Tensor,
    *,
    backend: str = "auto",
    vocab_block: int | None = None,
    pair_chunk: int = 4,
    finite_rows_out: list[torch.Tensor] | None = None,
) -> TokenDivergences:
    """Per-token JS, KL(a‖b), KL(b‖a) for scorer pairs, from logits or log-probs [S, T, V].

    Args:
        logits: [S, T, V] scores of S scorers at T positions (raw logits or log-probabilities:
            rows are renormalised here). Any float dtype; bf16/fp16 are read as they are.
        pairs: P pairs (i, j) into the S axis.
        backend: "triton" (CUDA), "torch", or "auto" (Triton on CUDA when importable).
        vocab_block: vocabulary block size (memory bound of the torch backend:
            about 12 float32 buffers of pair_chunk·T·vocab_block).
        pair_chunk: pairs per step of the torch backend.
        finite_rows_out: None: raise NonFiniteLogitsError (scorer, position) if a row's logits
            hold NaN/inf (costs a device sync). A list: the [S, T] bool mask "row is finite" is
            appended instead, unchecked, so a caller can check many calls with one sync.

    Returns:
        TokenDivergences with float64 tensors [P, T] (js, kl_ab = KL(P_i‖P_j), kl_ba).
        Agrees with the float64 reference to ~1e-6 relative (see the module docstring).
    """
    if logits.ndim != 3:
        raise ValueError(f"logits must be [S, T, V], got shape {tuple(logits.shape)}")
    scorers, positions, vocab = logits.shape
    # Validated on the host (no device sync per call), then copied without waiting for the GPU.
    index = to_device(pair_index(pairs, scorers, torch.device("cpu")), logits.device)
    if logits.stride(-1) != 1:
        logits = logits.contiguous()
    which = _resolve(backend, logits)
    lse = row_logsumexp(logits.reshape(scorers * positions, vocab), backend=which).reshape(scorers, positions)
    # A NaN or +inf logit makes its row's log-sum-exp non-finite, and so does an all −inf row:
    # checking the [S, T] lse catches every broken row without another pass over the vocabulary.
    finite_rows = torch.isfinite(lse)
    if finite_rows_out is None:
        raise_if_non_finite(finite_rows)
    else:
        finite_rows_out.append(finite_rows)
    if which == "triton":
        js, kl_ab, kl_ba = _pairs_triton(logits, lse, index, vocab_block or 2048)
    else:
        js, kl_ab, kl_ba = _pairs_torch(logits, lse, index, vocab_block or 8192, pair_chunk)
    return TokenDivergences(js=js.clamp_(0.0, LN2), kl_ab=kl_ab.clamp_(min=0.0), kl_ba=kl_ba.clamp_(min=0.0))
