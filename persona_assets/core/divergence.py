"""Jensen-Shannon and KL divergence between next-token distributions.

Two personas (system prompts) are compared at the output level: the same response is scored
under both, and at every position we compare the two next-token distributions P_a and P_b.

All values are in nats:
  KL(P‖Q) = Σ_v P(v) (log P(v) − log Q(v))          in [0, +inf]
  JS(P, Q) = ½ KL(P‖M) + ½ KL(Q‖M),  M = ½(P + Q)    in [0, ln 2]

Numerics
- Log-probabilities from a model usually arrive in float32 (or bf16). For near-identical
  personas JS is ~1e-7..1e-5 while each vocabulary term is of order the log-prob difference, so
  the sum cancels heavily; we therefore compute in float64 by default.
- Inputs are renormalised with `log_softmax` in the compute dtype. A float32 log_softmax output
  sums to 1 only to ~1e-7, and KL of unnormalised vectors picks up an additive error of the same
  size (the difference of the two masses) — as large as the signal for similar personas. After
  renormalising, Gibbs' inequality holds up to float64 rounding, so the final clamps only ever
  absorb rounding. (A side effect: raw logits give the same result as their log_softmax.)
- Accuracy of the float64 path: about 1e-16 nats absolute (so ~1e-9 relative at JS ≈ 1e-7).
  Divergences below ~1e-13 are therefore only resolved roughly — well under what float32 model
  outputs can resolve anyway (their own rounding puts a floor of ~1e-14 on JS).
- Zero probabilities (log p = −inf, e.g. masked tokens) follow 0·log 0 = 0; KL(P‖Q) is +inf
  when some token has P > 0 and Q = 0. JS is always finite.

No dagster import: this module is meant to be usable from a notebook.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

LN2: float = math.log(2)

__all__ = [
    "LN2",
    "TokenDivergences",
    "pair_divergences",
    "reference_divergences",
    "token_divergences",
]


@dataclass(frozen=True)
class TokenDivergences:
    """Per-position divergences between two next-token distributions (nats).

    All three tensors have the same shape (the input shape without the vocabulary axis).
    """

    js: torch.Tensor  # JS(P_a, P_b), in [0, ln 2]
    kl_ab: torch.Tensor  # KL(P_a ‖ P_b), in [0, +inf]
    kl_ba: torch.Tensor  # KL(P_b ‖ P_a), in [0, +inf]


# A measurement, not a loss: no autograd graph (the in-place buffer reuse below relies on it), so
# log-probs straight out of a forward pass that tracked gradients are accepted as they are.
@torch.no_grad()
def token_divergences(
    logp_a: torch.Tensor, logp_b: torch.Tensor, *, dtype: torch.dtype = torch.float64
) -> TokenDivergences:
    """JS and both KL directions between two next-token distributions, per position.

    Args:
        logp_a, logp_b: log-probabilities (log_softmax outputs) with the vocabulary on the last
            axis; shapes [..., V] that broadcast against each other. Any float dtype.
        dtype: compute (and result) dtype. float64 by default, to avoid cancellation for
            near-identical distributions.

    Returns:
        TokenDivergences whose tensors have the broadcast shape without the last axis, in
        `dtype`, on the inputs' device.

    Method: inputs are renormalised in `dtype` (see the module docstring), then
    JS = ½KL(P_a‖M) + ½KL(P_b‖M) with log M = logaddexp(log P_a, log P_b) − ln 2 computed in
    log space, so no probability is ever added and re-logged. Entries with log p = −inf
    contribute 0; KL is +inf where P_a > 0 and P_b = 0. A position whose log-probs are all −inf
    is not a distribution and gives NaN.

    Clamp: mathematically 0 ≤ JS ≤ ln 2 and KL ≥ 0. Float rounding can leave results a few ulp
    outside (e.g. −1e-17 for near-identical rows, ln 2·(1 + 1e-16) for disjoint supports); those
    are clamped into range. The clamp never hides more than rounding because the inputs are
    renormalised first.

    Peak memory is about six `dtype` buffers of the broadcast [..., V] shape. Not
    differentiable: runs under `torch.no_grad()`.
    """
    if logp_a.ndim == 0 or logp_b.ndim == 0:
        raise ValueError("log-probabilities need a vocabulary axis (last dimension)")
    # Leading axes may broadcast, the vocabulary may not: a size-1 "vocabulary" stretched to V
    # would not be a distribution.
    if logp_a.shape[-1] != logp_b.shape[-1]:
        raise ValueError(
            f"vocabulary axes differ: {tuple(logp_a.shape)} vs {tuple(logp_b.shape)}"
        )

    # Renormalise in the compute dtype so both rows sum to 1 to that dtype's precision.
    la = torch.log_softmax(logp_a.to(dtype), dim=-1)
    lb = torch.log_softmax(logp_b.to(dtype), dim=-1)
    la, lb = torch.broadcast_tensors(la, lb)  # views: no copy until an op needs one

    a_zero = torch.isneginf(la)
    b_zero = torch.isneginf(lb)
    pa = la.exp()
    pb = lb.exp()

    # Everything below uses the per-token log-ratio t = log P_b − log P_a. For similar
    # distributions la and lb are close, so this subtraction is exact (Sterbenz), whereas
    # la, lb and log M themselves carry an absolute rounding error of ulp(|log p|) (~1e-15 at
    # log p ≈ −7) — the same size as JS·1e-8 for near-identical personas.
    t = lb - la  # +inf where only P_a = 0, −inf where only P_b = 0, NaN where both are

    # KL(P_a‖P_b) = Σ pa·(la − lb) = −Σ pa·t. Masks fix the 0·(±inf) = NaN cases: a zero of P_a
    # contributes 0; a token with P_a > 0 and P_b = 0 makes KL infinite (set explicitly, since
    # pa may have underflowed to 0 although la is finite).
    terms = torch.mul(pa, t).neg_()
    kl_ab = terms.masked_fill_(a_zero, 0.0).masked_fill_(b_zero & ~a_zero, math.inf).sum(dim=-1)
    torch.mul(pb, t, out=terms)
    kl_ba = terms.masked_fill_(b_zero, 0.0).masked_fill_(a_zero & ~b_zero, math.inf).sum(dim=-1)

    # JS in log space: log M = logaddexp(la, lb) − ln 2, hence
    #   la − log M = ln 2 − logaddexp(0, t)   and   lb − log M = ln 2 − logaddexp(0, −t),
    # which depend on la, lb only through t (see above). Both are ≤ ln 2, so every term is finite
    # once the zeros of the weighting distribution are masked (there the product is 0·(−inf)).
    zero = torch.zeros((), dtype=dtype, device=t.device)
    torch.logaddexp(t, zero, out=terms)
    js_a = terms.neg_().add_(LN2).mul_(pa).masked_fill_(a_zero, 0.0).sum(dim=-1)
    torch.logaddexp(t.neg_(), zero, out=terms)
    js_b = terms.neg_().add_(LN2).mul_(pb).masked_fill_(b_zero, 0.0).sum(dim=-1)
    # 0.5·(x + y) is exactly symmetric in (a, b), so JS(a, b) == JS(b, a) bit for bit.
    js = (js_a + js_b).mul_(0.5)

    # Rounding-only clamps (see docstring); NaN and +inf pass through unchanged.
    js.clamp_(min=0.0, max=LN2)
    kl_ab.clamp_(min=0.0)
    kl_ba.clamp_(min=0.0)
    return TokenDivergences(js=js, kl_ab=kl_ab, kl_ba=kl_ba)


def _pair_index(
    pairs: Sequence[tuple[int, int]] | torch.Tensor, num_seqs: int, device: torch.device
) -> torch.Tensor:
    """Validate `pairs` and return them as a LongTensor [P, 2] on `device`."""
    if isinstance(pairs, torch.Tensor):
        if pairs.dtype.is_floating_point or pairs.dtype.is_complex or pairs.dtype == torch.bool:
            raise TypeError(f"pairs must hold integers, got dtype {pairs.dtype}")
        index = pairs.to(device=device, dtype=torch.long)
    else:
        index = torch.as_tensor([tuple(pair) for pair in pairs], dtype=torch.long, device=device)
    if index.numel() == 0:
        index = index.reshape(0, 2)
    if index.ndim != 2 or index.shape[1] != 2:
        raise ValueError(f"pairs must have shape [P, 2], got {tuple(index.shape)}")
    # Negative indices would silently wrap around under tensor indexing: reject them.
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= num_seqs):
        raise IndexError(f"pair indices must lie in [0, {num_seqs}), got {index.tolist()}")
    return index


def pair_divergences(
    logp: torch.Tensor,
    pairs: Sequence[tuple[int, int]] | torch.Tensor,
    *,
    chunk_size: int = 8,
    dtype: torch.dtype = torch.float64,
) -> TokenDivergences:
    """Divergences between many pairs of scoring sequences, position by position.

    Args:
        logp: [S, T, V] log-probabilities of S scoring sequences (e.g. one response
            teacher-forced under S system prompts) at T positions.
        pairs: P index pairs (i, j) into the S axis, as a sequence of 2-tuples or an integer
            tensor [P, 2]. (i, i) is allowed and gives zeros.
        chunk_size: pairs processed together. Memory is O(chunk_size·T·V) (about six `dtype`
            buffers of that size, see `token_divergences`); the [P, T, V] tensor of all pairs
            is never built.
        dtype: compute and result dtype.

    Returns:
        TokenDivergences with tensors [P, T]: js(i, j), kl_ab = KL(P_i‖P_j),
        kl_ba = KL(P_j‖P_i).
    """
    if logp.ndim != 3:
        raise ValueError(f"logp must be [S, T, V], got shape {tuple(logp.shape)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be ≥ 1, got {chunk_size}")
    num_seqs, num_positions, _ = logp.shape
    index = _pair_index(pairs, num_seqs, logp.device)
    num_pairs = index.shape[0]

    # Preallocated outputs: concatenating per-chunk results would briefly hold two copies.
    out = {
        name: torch.empty(num_pairs, num_positions, dtype=dtype, device=logp.device)
        for name in ("js", "kl_ab", "kl_ba")
    }
    for start in range(0, num_pairs, chunk_size):
        chunk = index[start : start + chunk_size]
        # Gathering copies only this chunk's rows ([chunk, T, V] in the input dtype).
        part = token_divergences(logp[chunk[:, 0]], logp[chunk[:, 1]], dtype=dtype)
        stop = start + chunk.shape[0]
        out["js"][start:stop] = part.js
        out["kl_ab"][start:stop] = part.kl_ab
        out["kl_ba"][start:stop] = part.kl_ba
    return TokenDivergences(**out)


def reference_divergences(p: np.ndarray, q: np.ndarray) -> tuple[float, float, float]:
    """Slow, deliberately plain float64 reference for ONE position (used by tests only).

    Args:
        p, q: probability vectors (1-D, non-negative, summing to 1 within 1e-9).

    Returns:
        (js, kl_pq, kl_qp) in nats, from an explicit loop over the vocabulary with the
        textbook conventions 0·log(0/x) = 0 and x·log(x/0) = +inf for x > 0.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.ndim != 1 or p.shape != q.shape:
        raise ValueError(f"p and q must be 1-D of equal length, got {p.shape} and {q.shape}")
    for name, vec in (("p", p), ("q", q)):
        if not np.all(np.isfinite(vec)) or np.any(vec < 0) or abs(math.fsum(vec) - 1.0) > 1e-9:
            raise ValueError(f"{name} is not a probability vector")

    def kl_term(x: float, y: float) -> float:
        """x·log(x/y), the KL(·‖·) contribution of one token."""
        if x == 0.0:
            return 0.0
        if y == 0.0:
            return math.inf
        return x * math.log(x / y)

    def kl_to_mixture_term(x: float, y: float) -> float:
        """x·log(x/m) with m = (x+y)/2, written as x·log(2x/(x+y)) so that m never underflows
        to 0 for a subnormal x."""
        return 0.0 if x == 0.0 else x * math.log(2.0 * x / (x + y))

    kl_pq_terms, kl_qp_terms, js_terms = [], [], []
    for p_v, q_v in zip(p.tolist(), q.tolist()):
        kl_pq_terms.append(kl_term(p_v, q_v))
        kl_qp_terms.append(kl_term(q_v, p_v))
        js_terms.append(0.5 * kl_to_mixture_term(p_v, q_v) + 0.5 * kl_to_mixture_term(q_v, p_v))
    # fsum adds exactly: the reference's only errors are the roundings of individual terms.
    return math.fsum(js_terms), math.fsum(kl_pq_terms), math.fsum(kl_qp_terms)
