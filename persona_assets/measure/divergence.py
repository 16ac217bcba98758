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

from persona_assets.constants import LN2  # noqa: E402  (re-exported)

__all__ = [
    "LN2",
    "TokenDivergences",
    "pair_divergences",
    "DivergenceWorkspace",
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


class DivergenceWorkspace:
    """Reusable [..., V] buffers for `token_divergences` / `pair_divergences`.

    Each block of positions needs its rows in float64 twice ([rows, block, V]) and a few [block, V]
    float64 buffers per pair (~19 MB and ~1.6 MB for 12 rows × 4 positions × 49k vocabulary).
    Allocated afresh for every block, buffers of that size come and go thousands of times per run; glibc
    malloc serves them from its heap once its dynamic mmap threshold has risen past their size, and the heap
    can fragment and keep freed
    blocks (one CPU run of 1,100 scoring passes of a tiny model peaked at about 1 GB, although
    every pass needs the same ~100 MB; benchmarks/results/scale_cpu_*.txt). One workspace
    per scoring loop allocates each buffer once (again only when a larger shape comes along) and
    hands out contiguous views of it, so memory stays at one chunk's worth and no page is
    faulted in twice.

    Not thread-safe: one workspace per loop.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def take(
        self, name: str, shape: Sequence[int], dtype: torch.dtype, device: torch.device | None = None
    ) -> torch.Tensor:
        """A contiguous tensor of `shape` backed by buffer `name` (contents undefined)."""
        numel = math.prod(shape)
        buffer = self._buffers.get(name)
        if (
            buffer is None
            or buffer.numel() < numel
            or buffer.dtype != dtype
            or (device is not None and buffer.device != torch.device(device))
        ):
            self._buffers.pop(name, None)  # free the old buffer before allocating its successor
            buffer = torch.empty(numel, dtype=dtype, device=device)
            self._buffers[name] = buffer
        return buffer[:numel].view(tuple(shape))

    @property
    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self._buffers.values())


def _fresh(name: str, shape: Sequence[int], dtype: torch.dtype, device: torch.device | None = None) -> torch.Tensor:
    """`DivergenceWorkspace.take` without a workspace: a new tensor every time."""
    return torch.empty(tuple(shape), dtype=dtype, device=device)


def _cast(x: torch.Tensor, dtype: torch.dtype, take, name: str) -> torch.Tensor:
    """`x.to(dtype)`, written into buffer `name` when a copy is needed."""
    return x if x.dtype == dtype else take(name, x.shape, dtype, x.device).copy_(x)


# A measurement, not a loss: no autograd graph (the in-place buffer reuse below relies on it), so
# log-probs straight out of a forward pass that tracked gradients are accepted as they are.
@torch.no_grad()
def token_divergences(
    logp_a: torch.Tensor,
    logp_b: torch.Tensor,
    *,
    dtype: torch.dtype = torch.float64,
    workspace: "DivergenceWorkspace | None" = None,
) -> TokenDivergences:
    """JS and both KL directions between two next-token distributions, per position.

    Args:
        logp_a, logp_b: log-probabilities (log_softmax outputs) with the vocabulary on the last
            axis; shapes [..., V] that broadcast against each other. Any float dtype.
        dtype: compute (and result) dtype. float64 by default, to avoid cancellation for
            near-identical distributions.
        workspace: where the [..., V] intermediates live (reused from call to call); None
            allocates them afresh. The results are the same bit for bit either way.

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

    Peak memory is about six `dtype` buffers of the broadcast [..., V] shape (taken from
    `workspace` when one is given). Not differentiable: runs under `torch.no_grad()`.
    """
    if logp_a.ndim == 0 or logp_b.ndim == 0:
        raise ValueError("log-probabilities need a vocabulary axis (last dimension)")
    # Leading axes may broadcast, the vocabulary may not: a size-1 "vocabulary" stretched to V
    # would not be a distribution.
    if logp_a.shape[-1] != logp_b.shape[-1]:
        raise ValueError(f"vocabulary axes differ: {tuple(logp_a.shape)} vs {tuple(logp_b.shape)}")

    take = workspace.take if workspace is not None else _fresh
    la, pa, a_zero = _renormalised(logp_a, dtype, take, "a")
    lb, pb, b_zero = _renormalised(logp_b, dtype, take, "b")
    la, lb, pa, pb = torch.broadcast_tensors(la, lb, pa, pb)  # views: no copy until an op needs one
    if a_zero is not None or b_zero is not None:
        a_zero, b_zero = (torch.isneginf(x) for x in (la, lb))  # both masks, broadcast
    return _divergences(la, lb, pa, pb, a_zero, b_zero, take)


def _renormalised(
    logp: torch.Tensor, dtype: torch.dtype, take, name: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(log P, P, zero mask or None) of rows renormalised in `dtype` (see the module docstring).

    The cast lands in the buffer that then holds P: it is dead once log_softmax has run. The mask
    is None when no entry is −inf (the usual case for finite logits): every masked fill below is
    then the identity and is skipped, which leaves the results bit for bit the same.
    """
    device = logp.device
    lp = torch.log_softmax(
        _cast(logp, dtype, take, f"p{name}"), dim=-1, out=take(f"l{name}", logp.shape, dtype, device)
    )
    # Whether any entry is −inf, from the minimum (a third of the cost of a full mask); a NaN
    # minimum (an all −inf row) says nothing about the other rows, so the mask is then built.
    lowest = float(lp.amin()) if lp.numel() else 0.0
    zero = None
    if lowest == -math.inf or math.isnan(lowest):
        zero = torch.isneginf(lp, out=take(f"{name}_zero", lp.shape, torch.bool, device))
        zero = zero if bool(zero.any()) else None
    p = torch.exp(lp, out=take(f"p{name}", lp.shape, dtype, device))
    return lp, p, zero


def _divergences(
    la: torch.Tensor,
    lb: torch.Tensor,
    pa: torch.Tensor,
    pb: torch.Tensor,
    a_zero: torch.Tensor | None,
    b_zero: torch.Tensor | None,
    take,
) -> TokenDivergences:
    """JS, KL(a‖b), KL(b‖a) over the last axis from renormalised log-probs and probabilities of
    one shape; the zero masks are both given or both None (no −inf anywhere)."""
    shape, dtype, device = la.shape, la.dtype, la.device
    masked = a_zero is not None

    # Everything below uses the per-token log-ratio t = log P_b − log P_a. For similar
    # distributions la and lb are close, so this subtraction is exact (Sterbenz), whereas
    # la, lb and log M themselves carry an absolute rounding error of ulp(|log p|) (~1e-15 at
    # log p ≈ −7) — the same size as JS·1e-8 for near-identical personas.
    # t is +inf where only P_a = 0, −inf where only P_b = 0, NaN where both are.
    t = torch.sub(lb, la, out=take("t", shape, dtype, device))

    # KL(P_a‖P_b) = Σ pa·(la − lb) = −Σ pa·t. Masks fix the 0·(±inf) = NaN cases: a zero of P_a
    # contributes 0; a token with P_a > 0 and P_b = 0 makes KL infinite (set explicitly, since
    # pa may have underflowed to 0 although la is finite).
    # (Without zeros the sign goes on the sum: −Σx and Σ(−x) are the same bits, one pass fewer.)
    terms = torch.mul(pa, t, out=take("terms", shape, dtype, device))
    if masked:
        only = take("only", shape, torch.bool, device)  # "zero in one distribution only"
        only = torch.bitwise_and(b_zero, torch.bitwise_not(a_zero, out=only), out=only)
        terms.neg_().masked_fill_(a_zero, 0.0).masked_fill_(only, math.inf)
        kl_ab = terms.sum(dim=-1)
    else:
        kl_ab = terms.sum(dim=-1).neg_()
    torch.mul(pb, t, out=terms)
    if masked:
        only = torch.bitwise_and(a_zero, torch.bitwise_not(b_zero, out=only), out=only)
        terms.masked_fill_(b_zero, 0.0).masked_fill_(only, math.inf)
    kl_ba = terms.sum(dim=-1)

    # JS in log space: log M = logaddexp(la, lb) − ln 2, hence
    #   la − log M = ln 2 − logaddexp(0, t)   and   lb − log M = ln 2 − logaddexp(0, −t),
    # which depend on la, lb only through t (see above). Both are ≤ ln 2, so every term is finite
    # once the zeros of the weighting distribution are masked (there the product is 0·(−inf)).
    # torch computes logaddexp(x, 0) as max(x, 0) + log1p(exp(−|x|)), and |t| = |−t|: the second
    # part, the costly one, is the same for both directions, so it is computed once, as
    # logaddexp(−|t|, 0) (max(−|t|, 0) = 0 adds nothing), and each direction adds its own max:
    # the same bits as two logaddexp calls, for about half their cost.
    # (ln 2 − x in one op: the same bits as −x + ln 2.)
    zero = torch.zeros((), dtype=dtype, device=device)
    ln2 = torch.full((), LN2, dtype=dtype, device=device)
    log1p_exp = torch.abs(t, out=take("log1p_exp", shape, dtype, device)).neg_()
    torch.logaddexp(log1p_exp, zero, out=log1p_exp)
    torch.clamp(t, min=0.0, out=terms).add_(log1p_exp)  # logaddexp(t, 0)
    torch.sub(ln2, terms, out=terms).mul_(pa)
    js_a = (terms.masked_fill_(a_zero, 0.0) if masked else terms).sum(dim=-1)
    torch.clamp(t.neg_(), min=0.0, out=terms).add_(log1p_exp)  # logaddexp(−t, 0)
    torch.sub(ln2, terms, out=terms).mul_(pb)
    js_b = (terms.masked_fill_(b_zero, 0.0) if masked else terms).sum(dim=-1)
    # 0.5·(x + y) is exactly symmetric in (a, b), so JS(a, b) == JS(b, a) bit for bit.
    js = (js_a + js_b).mul_(0.5)

    # Rounding-only clamps (see docstring); NaN and +inf pass through unchanged.
    js.clamp_(min=0.0, max=LN2)
    kl_ab.clamp_(min=0.0)
    kl_ba.clamp_(min=0.0)
    return TokenDivergences(js=js, kl_ab=kl_ab, kl_ba=kl_ba)


def pair_index(pairs: Sequence[tuple[int, int]] | torch.Tensor, num_seqs: int, device: torch.device) -> torch.Tensor:
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
    workspace: DivergenceWorkspace | None = None,
) -> TokenDivergences:
    """Divergences between many pairs of scoring sequences, position by position.

    Args:
        logp: [S, T, V] log-probabilities of S scoring sequences (e.g. one response
            teacher-forced under S system prompts) at T positions.
        pairs: P index pairs (i, j) into the S axis, as a sequence of 2-tuples or an integer
            tensor [P, 2]. (i, i) is allowed and gives zeros.
        chunk_size: the memory bound: a block of positions holds the rows it needs for no more
            V-vectors than chunk_size pairs over all T positions would (`positions_per_block`),
            i.e. O(chunk_size·T·V); the [P, T, V] tensor of all pairs is never built. Pairs run
            one at a time over the block, sharing its renormalised rows.
        dtype: compute and result dtype.
        workspace: buffers to reuse across chunks and calls (a scoring loop passes one for all
            its responses); None uses a fresh one for this call's chunks.

    Returns:
        TokenDivergences with tensors [P, T]: js(i, j), kl_ab = KL(P_i‖P_j),
        kl_ba = KL(P_j‖P_i).
    """
    if logp.ndim != 3:
        raise ValueError(f"logp must be [S, T, V], got shape {tuple(logp.shape)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be ≥ 1, got {chunk_size}")
    num_seqs, num_positions, vocab = logp.shape
    index = pair_index(pairs, num_seqs, logp.device)
    num_pairs = index.shape[0]

    # Preallocated outputs: concatenating per-block results would briefly hold two copies.
    out = {
        name: torch.empty(num_pairs, num_positions, dtype=dtype, device=logp.device)
        for name in ("js", "kl_ab", "kl_ba")
    }
    if num_pairs == 0 or num_positions == 0:
        return TokenDivergences(**out)
    workspace = workspace if workspace is not None else DivergenceWorkspace()
    take = workspace.take
    # Every row the pairs use is cast, renormalised and exponentiated once per block of positions
    # and shared by all its pairs (pair-own pairs (g, o) use the generator's row N − 1 times);
    # renormalising per pair side did that work 2P times instead of once per row.
    used = sorted({int(s) for s in index.flatten().tolist()})
    local = {row: k for k, row in enumerate(used)}
    pair_rows = [(local[int(a)], local[int(b)]) for a, b in index.tolist()]
    used_index = torch.as_tensor(used, dtype=torch.long, device=logp.device)
    block = positions_per_block(len(used), num_positions, chunk_size)
    for start in range(0, num_positions, block):
        stop = min(start + block, num_positions)
        # [U, b, V]: only this block's rows are copied (straight into the compute dtype when
        # every row is used, as with pair-own pairs; else gathered first in the input dtype).
        rows = logp[:, start:stop]
        if len(used) < num_seqs:
            shape = (len(used), stop - start, vocab)
            rows = torch.index_select(rows, 0, used_index, out=take("rows", shape, logp.dtype, logp.device))
        log_p, p, zero = _renormalised(rows, dtype, take, "")
        for k, (a, b) in enumerate(pair_rows):
            masks = (zero[a], zero[b]) if zero is not None else (None, None)
            part = _divergences(log_p[a], log_p[b], p[a], p[b], *masks, take)
            out["js"][k, start:stop] = part.js
            out["kl_ab"][k, start:stop] = part.kl_ab
            out["kl_ba"][k, start:stop] = part.kl_ba
    return TokenDivergences(**out)


# A block's per-pair intermediates ([b, V] float64 each, a handful of them) are meant to stay in
# the CPU's caches between the dozen passes the divergences make over them; past a few MB every
# pass goes to main memory (measured: benchmarks/results/cpu_divergence_step_*.txt).
BLOCK_VECTORS = 4


def positions_per_block(rows: int, positions: int, chunk_size: int) -> int:
    """Positions processed together by `pair_divergences`.

    At most `BLOCK_VECTORS` (cache-sized per-pair intermediates), and the block's `rows` renormalised
    rows hold no more V-vectors than a chunk of `chunk_size` pairs over every position would (the
    memory bound `chunk_size` promises); at least 1.
    """
    return max(1, min(positions, BLOCK_VECTORS, (chunk_size * positions) // max(rows, 1)))


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
