"""Tests for persona_assets.measure.divergence: closed forms, theorems, and a slow reference."""

from __future__ import annotations

import math

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from persona_assets.measure import divergence
from persona_assets.measure.divergence import (
    LN2,
    TokenDivergences,
    pair_divergences,
    reference_divergences,
    token_divergences,
)

INF = math.inf
# Absolute slack for inequalities: the float64 path is accurate to ~1e-16 nats (module docstring).
ATOL = 1e-14


def logp_of(probs) -> torch.Tensor:
    """float64 log-probabilities of a probability vector (log 0 = −inf)."""
    return torch.tensor(probs, dtype=torch.float64).log()


def entropy(probs) -> float:
    return -sum(x * math.log(x) for x in probs if x > 0)


def scalars(d: TokenDivergences) -> tuple[float, float, float]:
    return d.js.item(), d.kl_ab.item(), d.kl_ba.item()


def reference_from_logp(la: torch.Tensor, lb: torch.Tensor) -> tuple[float, float, float]:
    """Reference on the probabilities that float64 log-probs la, lb stand for."""
    p = la.to(torch.float64).exp().numpy()
    q = lb.to(torch.float64).exp().numpy()
    return reference_divergences(p / p.sum(), q / q.sum())


# --- closed forms -------------------------------------------------------------------------


def test_identical_distributions_give_zero():
    logp = logp_of([0.1, 0.2, 0.7])
    js, kl_ab, kl_ba = scalars(token_divergences(logp, logp))
    assert 0.0 <= js <= 1e-16
    assert kl_ab == 0.0 and kl_ba == 0.0


def test_disjoint_supports_give_ln2_and_infinite_kl():
    d = token_divergences(logp_of([0.5, 0.5, 0.0, 0.0]), logp_of([0.0, 0.0, 0.3, 0.7]))
    js, kl_ab, kl_ba = scalars(d)
    assert js == pytest.approx(LN2, rel=1e-15)
    assert kl_ab == INF and kl_ba == INF


def bernoulli_kl(a: float, b: float) -> float:
    """KL(Bern(a) ‖ Bern(b)) = a ln(a/b) + (1−a) ln((1−a)/(1−b))."""
    return a * math.log(a / b) + (1 - a) * math.log((1 - a) / (1 - b))


def bernoulli_js(a: float, b: float) -> float:
    """JS = H(M) − ½(H(P) + H(Q)) with M = Bern((a+b)/2): an independent form of the definition."""
    m = (a + b) / 2
    return entropy([m, 1 - m]) - 0.5 * (entropy([a, 1 - a]) + entropy([b, 1 - b]))


@pytest.mark.parametrize("a, b", [(0.5, 0.9), (0.1, 0.2), (0.01, 0.99), (0.3, 0.3), (0.5, 0.5 + 1e-4)])
def test_bernoulli_closed_form(a, b):
    js, kl_ab, kl_ba = scalars(token_divergences(logp_of([a, 1 - a]), logp_of([b, 1 - b])))
    assert js == pytest.approx(bernoulli_js(a, b), rel=1e-9, abs=1e-16)
    assert kl_ab == pytest.approx(bernoulli_kl(a, b), rel=1e-9, abs=1e-16)
    assert kl_ba == pytest.approx(bernoulli_kl(b, a), rel=1e-9, abs=1e-16)


def test_bernoulli_half_vs_point_nine_by_hand():
    # p = (½, ½), q = (0.9, 0.1): KL(p‖q) = ½ ln(0.5/0.9) + ½ ln(0.5/0.1) = ln(5/3);
    # KL(q‖p) = 0.9 ln 1.8 + 0.1 ln 0.2; M = (0.7, 0.3),
    # JS = ½[½ ln(0.5/0.7) + ½ ln(0.5/0.3)] + ½[0.9 ln(0.9/0.7) + 0.1 ln(0.1/0.3)].
    js, kl_ab, kl_ba = scalars(token_divergences(logp_of([0.5, 0.5]), logp_of([0.9, 0.1])))
    assert kl_ab == pytest.approx(math.log(5 / 3), rel=1e-12)
    assert kl_ba == pytest.approx(0.9 * math.log(1.8) + 0.1 * math.log(0.2), rel=1e-12)
    expected_js = 0.5 * (0.5 * math.log(0.5 / 0.7) + 0.5 * math.log(0.5 / 0.3)) + 0.5 * (
        0.9 * math.log(0.9 / 0.7) + 0.1 * math.log(0.1 / 0.3)
    )
    assert js == pytest.approx(expected_js, rel=1e-12)


def test_uniform_vs_one_hot_over_four():
    # P uniform over 4, Q = e_0. M = (5/8, 1/8, 1/8, 1/8).
    # JS = H(M) − ½H(P) − ½H(Q) = [5/8 ln(8/5) + 3/8 ln 8] − ½ ln 4 = 2 ln 2 − (5/8) ln 5.
    # KL(Q‖P) = ln 4; KL(P‖Q) = inf (P has mass where Q has none).
    js, kl_ab, kl_ba = scalars(token_divergences(logp_of([0.25] * 4), logp_of([1.0, 0.0, 0.0, 0.0])))
    assert js == pytest.approx(2 * LN2 - 5 / 8 * math.log(5), rel=1e-12)
    assert kl_ab == INF
    assert kl_ba == pytest.approx(math.log(4), rel=1e-12)


@pytest.mark.parametrize("vocab", [2, 4, 1000])
def test_uniform_vs_one_hot_general_vocabulary(vocab):
    # M = ((V+1)/2V, 1/2V, ...): JS = H(M) − ½ ln V, KL(one-hot ‖ uniform) = ln V.
    js, kl_ab, kl_ba = scalars(token_divergences(logp_of([1.0 / vocab] * vocab), logp_of([1.0] + [0.0] * (vocab - 1))))
    m_top, m_rest = (vocab + 1) / (2 * vocab), 1 / (2 * vocab)
    h_m = -m_top * math.log(m_top) - (vocab - 1) * m_rest * math.log(m_rest)
    assert js == pytest.approx(h_m - 0.5 * math.log(vocab), rel=1e-12)
    assert kl_ab == INF
    assert kl_ba == pytest.approx(math.log(vocab), rel=1e-12)


# --- zero probabilities ------------------------------------------------------------------


def test_partial_support_overlap():
    # P = (½, ½, 0), Q = (¼, ¼, ½): KL(P‖Q) = ln 2, KL(Q‖P) = inf, JS finite.
    p, q = [0.5, 0.5, 0.0], [0.25, 0.25, 0.5]
    js, kl_ab, kl_ba = scalars(token_divergences(logp_of(p), logp_of(q)))
    m = [(x + y) / 2 for x, y in zip(p, q)]
    assert js == pytest.approx(entropy(m) - 0.5 * (entropy(p) + entropy(q)), rel=1e-12)
    assert kl_ab == pytest.approx(LN2, rel=1e-12)
    assert kl_ba == INF


def test_shared_zeros_do_not_contribute():
    # A token impossible under both personas changes nothing: same as the Bernoulli case.
    with_zero = scalars(token_divergences(logp_of([0.5, 0.5, 0.0]), logp_of([0.9, 0.1, 0.0])))
    without = scalars(token_divergences(logp_of([0.5, 0.5]), logp_of([0.9, 0.1])))
    assert with_zero == pytest.approx(without, rel=1e-14)
    assert all(math.isfinite(x) for x in with_zero)


def test_masked_logits_match_reference():
    # Vocabulary masking (logit = −inf) as a model would do it, in both personas and apart.
    gen = torch.Generator().manual_seed(3)
    logits_a = torch.randn(6, 9, generator=gen, dtype=torch.float64) * 2
    logits_b = torch.randn(6, 9, generator=gen, dtype=torch.float64) * 2
    logits_a[:, 0] = -INF  # zero under both
    logits_b[:, 0] = -INF
    logits_a[:3, 1] = -INF  # zero under a only → KL(b‖a) = inf on those rows
    la, lb = logits_a.log_softmax(-1), logits_b.log_softmax(-1)
    d = token_divergences(la, lb)
    assert torch.isfinite(d.js).all()
    assert torch.isfinite(d.kl_ab).all()
    assert torch.isinf(d.kl_ba[:3]).all() and torch.isfinite(d.kl_ba[3:]).all()
    for row in range(6):
        ref = reference_from_logp(la[row], lb[row])
        np.testing.assert_allclose([d.js[row].item(), d.kl_ab[row].item(), d.kl_ba[row].item()], ref, rtol=1e-9)


def test_underflowed_probability_still_makes_kl_infinite():
    # P_a(1) = e^−1000 underflows to 0 in float64 but is positive; P_b(1) = 0 exactly.
    la = torch.tensor([0.0, -1000.0], dtype=torch.float64)
    lb = torch.tensor([0.0, -INF], dtype=torch.float64)
    js, kl_ab, kl_ba = scalars(token_divergences(la, lb))
    assert kl_ab == INF
    assert kl_ba == pytest.approx(0.0, abs=1e-300)
    assert js == pytest.approx(0.0, abs=1e-300)


def test_all_zero_row_is_nan():
    la = torch.full((3,), -INF, dtype=torch.float64)
    d = token_divergences(la, logp_of([0.2, 0.3, 0.5]))
    assert torch.isnan(d.js) and torch.isnan(d.kl_ab) and torch.isnan(d.kl_ba)


def test_an_all_zero_row_does_not_hide_the_zeros_of_the_other_rows():
    # The zero mask is skipped when the rows' minimum is finite; an all −inf row makes that
    # minimum NaN, which must not be read as "no zeros" for the rows beside it.
    la = torch.stack([torch.full((3,), -INF, dtype=torch.float64), logp_of([0.5, 0.5, 0.0])])
    lb = logp_of([0.2, 0.3, 0.5]).expand(2, 3)
    d = token_divergences(la, lb)
    assert torch.isnan(d.js[0])
    np.testing.assert_allclose(
        scalars(TokenDivergences(d.js[1], d.kl_ab[1], d.kl_ba[1])), reference_from_logp(la[1], lb[1]), rtol=1e-12
    )
    assert d.kl_ba[1] == INF


def _two_logaddexp_js(la: torch.Tensor, lb: torch.Tensor) -> torch.Tensor:
    """JS as the module computed it before sharing log1p(exp(−|t|)): two logaddexp calls."""
    la, lb = la.log_softmax(-1), lb.log_softmax(-1)
    t, zero = lb - la, torch.zeros((), dtype=la.dtype)
    js_a = ((LN2 - torch.logaddexp(t, zero)) * la.exp()).sum(-1)
    js_b = ((LN2 - torch.logaddexp(-t, zero)) * lb.exp()).sum(-1)
    return (js_a + js_b) * 0.5


@pytest.mark.parametrize("spread", [1e-4, 1.0, 30.0])
def test_shared_log1p_exp_gives_the_bits_of_two_logaddexp_calls(spread):
    gen = torch.Generator().manual_seed(11)
    la = torch.randn(5, 4099, generator=gen, dtype=torch.float64) * 3
    lb = la + torch.randn(5, 4099, generator=gen, dtype=torch.float64) * spread
    js = token_divergences(la, lb).js.clamp(max=LN2)
    assert torch.equal(js, _two_logaddexp_js(la, lb).clamp(min=0.0, max=LN2))


# --- properties on random logits ------------------------------------------------------------

FINITE_LOGITS = st.floats(-20, 20, allow_nan=False, allow_infinity=False)


@st.composite
def logit_pair(draw, with_zeros: bool = False) -> tuple[np.ndarray, np.ndarray]:
    vocab = draw(st.integers(2, 50))
    a = draw(hnp.arrays(np.float64, vocab, elements=FINITE_LOGITS))
    b = draw(hnp.arrays(np.float64, vocab, elements=FINITE_LOGITS))
    if with_zeros:
        for row in (a, b):
            mask = draw(hnp.arrays(np.bool_, vocab))
            mask[draw(st.integers(0, vocab - 1))] = False  # keep at least one possible token
            row[mask] = -INF
    return a, b


def as_logp(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).log_softmax(-1)


@settings(max_examples=200, deadline=None)
@given(logit_pair())
def test_properties_finite_logits(pair):
    la, lb = map(as_logp, pair)
    d = token_divergences(la, lb)
    swapped = token_divergences(lb, la)
    js, kl_ab, kl_ba = scalars(d)

    # Symmetry of JS and the KL pair under swapping (exact, see the implementation).
    assert swapped.js.item() == js
    assert (swapped.kl_ab.item(), swapped.kl_ba.item()) == (kl_ba, kl_ab)

    assert 0.0 <= js <= LN2
    assert kl_ab >= 0.0 and kl_ba >= 0.0
    assert math.isfinite(kl_ab) and math.isfinite(kl_ba)  # full support on both sides

    l1 = (la.exp() - lb.exp()).abs().sum().item()
    # Theorems (all in nats), checked numerically in development too:
    # KL(P‖M) ≤ ½KL(P‖Q) by convexity of KL in its second argument ⇒ JS ≤ ¼(KL_ab + KL_ba).
    assert js <= 0.25 * (kl_ab + kl_ba) + ATOL
    # JS ≤ ln 2 · TV, TV = ½‖P − Q‖₁ (Lin 1991): per-token convexity between 0 and ln 2.
    assert js <= LN2 * l1 / 2 + ATOL
    # Pinsker, KL ≥ ½‖P − Q‖₁², applied to KL(P‖M) with ‖P − M‖₁ = ½‖P − Q‖₁ ⇒ JS ≥ ⅛‖P − Q‖₁².
    assert kl_ab >= 0.5 * l1**2 - ATOL and kl_ba >= 0.5 * l1**2 - ATOL
    assert js >= l1**2 / 8 - ATOL
    # "= 0 iff equal": clearly different distributions give strictly positive values.
    if l1 > 1e-6:
        assert js > 0 and kl_ab > 0 and kl_ba > 0

    np.testing.assert_allclose(scalars(d), reference_from_logp(la, lb), rtol=1e-9, atol=ATOL)


@settings(max_examples=200, deadline=None)
@given(logit_pair(), st.data())
def test_equal_distributions_are_zero(pair, data):
    la = as_logp(pair[0])
    # The same distribution written with a different normalisation constant (logits + c).
    shift = data.draw(st.floats(-5, 5))
    d = token_divergences(la, torch.from_numpy(pair[0] + shift))
    assert d.js.item() <= 1e-15
    assert d.kl_ab.item() <= 1e-14 and d.kl_ba.item() <= 1e-14
    exact = token_divergences(la, la)
    assert exact.kl_ab.item() == 0.0 and exact.kl_ba.item() == 0.0


@settings(max_examples=200, deadline=None)
@given(logit_pair(with_zeros=True))
def test_properties_with_zero_probabilities(pair):
    la, lb = map(as_logp, pair)
    d = token_divergences(la, lb)
    js, kl_ab, kl_ba = scalars(d)
    assert math.isfinite(js) and 0.0 <= js <= LN2
    pa_pos, pb_pos = torch.isfinite(la), torch.isfinite(lb)
    # KL(P‖Q) is infinite exactly when P puts mass where Q has none.
    assert math.isinf(kl_ab) == bool((pa_pos & ~pb_pos).any())
    assert math.isinf(kl_ba) == bool((pb_pos & ~pa_pos).any())
    assert kl_ab >= 0.0 and kl_ba >= 0.0
    if not (pa_pos & pb_pos).any():
        assert js == pytest.approx(LN2, rel=1e-15)
    np.testing.assert_allclose(scalars(d), reference_from_logp(la, lb), rtol=1e-9, atol=ATOL)


# --- near-identical distributions and input dtypes ---------------------------------------


@pytest.mark.parametrize("noise", [1e-3, 3e-3, 1e-2])
def test_near_identical_matches_reference(noise):
    gen = torch.Generator().manual_seed(7)
    logits = torch.randn(8, 200, generator=gen, dtype=torch.float64) * 2
    other = logits + noise * torch.randn(8, 200, generator=gen, dtype=torch.float64)
    la, lb = logits.log_softmax(-1), other.log_softmax(-1)
    d = token_divergences(la, lb)
    # JS ≈ ⅛ Var(noise): the regime of similar personas, where cancellation would bite.
    assert ((d.js > 1e-8) & (d.js < 1e-4)).all()
    for row in range(8):
        ref = reference_from_logp(la[row], lb[row])
        np.testing.assert_allclose([d.js[row].item(), d.kl_ab[row].item(), d.kl_ba[row].item()], ref, rtol=1e-6)


def test_float32_inputs_are_computed_in_float64():
    """Model log-probs arrive in float32: they are accepted, and the result is exactly that of
    the same float32 values upcast to float64 (no float32 arithmetic anywhere)."""
    gen = torch.Generator().manual_seed(11)
    logits = torch.randn(5, 300, generator=gen) * 2
    logp32_a = logits.log_softmax(-1)
    logp32_b = (logits + 1e-3 * torch.randn(5, 300, generator=gen)).log_softmax(-1)
    assert logp32_a.dtype == torch.float32

    d32 = token_divergences(logp32_a, logp32_b)
    d64 = token_divergences(logp32_a.double(), logp32_b.double())
    assert d32.js.dtype == torch.float64
    for name in ("js", "kl_ab", "kl_ba"):
        assert torch.equal(getattr(d32, name), getattr(d64, name))
    for row in range(5):
        ref = reference_from_logp(logp32_a[row], logp32_b[row])
        np.testing.assert_allclose([d32.js[row].item(), d32.kl_ab[row].item(), d32.kl_ba[row].item()], ref, rtol=1e-6)


def test_dtype_argument_sets_result_dtype():
    la, lb = logp_of([0.5, 0.5]), logp_of([0.9, 0.1])
    d = token_divergences(la, lb, dtype=torch.float32)
    assert d.js.dtype == d.kl_ab.dtype == d.kl_ba.dtype == torch.float32
    assert d.js.item() == pytest.approx(bernoulli_js(0.5, 0.9), rel=1e-5)


def test_logits_give_the_same_result_as_log_probs():
    gen = torch.Generator().manual_seed(5)
    logits_a = torch.randn(4, 30, generator=gen, dtype=torch.float64) * 3 + 10
    logits_b = torch.randn(4, 30, generator=gen, dtype=torch.float64) * 3 - 4
    raw = token_divergences(logits_a, logits_b)
    normed = token_divergences(logits_a.log_softmax(-1), logits_b.log_softmax(-1))
    for name in ("js", "kl_ab", "kl_ba"):
        torch.testing.assert_close(getattr(raw, name), getattr(normed, name), rtol=1e-12, atol=0)


def test_broadcasting_over_leading_axes():
    gen = torch.Generator().manual_seed(2)
    la = torch.randn(7, generator=gen, dtype=torch.float64).log_softmax(-1)
    lb = torch.randn(3, 7, generator=gen, dtype=torch.float64).log_softmax(-1)
    d = token_divergences(la, lb)
    assert d.js.shape == d.kl_ab.shape == d.kl_ba.shape == (3,)
    for row in range(3):
        one = token_divergences(la, lb[row])
        assert one.js.shape == ()
        assert one.js.item() == pytest.approx(d.js[row].item(), rel=1e-14)
        assert one.kl_ab.item() == pytest.approx(d.kl_ab[row].item(), rel=1e-14)


def test_shape_errors():
    with pytest.raises(ValueError, match="vocabulary"):
        token_divergences(torch.zeros(3, 4), torch.zeros(3, 5))
    with pytest.raises(ValueError, match="vocabulary"):
        token_divergences(torch.zeros(3, 4), torch.zeros(3, 1))
    with pytest.raises(ValueError):
        token_divergences(torch.tensor(0.0), torch.zeros(4))


# --- pair_divergences ------------------------------------------------------------------------


def slow_pair_reference(logp: torch.Tensor, pairs) -> np.ndarray:
    """[3, P, T] = (js, kl_ij, kl_ji) from the loop reference, pair by pair and position."""
    out = np.empty((3, len(pairs), logp.shape[1]))
    for k, (i, j) in enumerate(pairs):
        for t in range(logp.shape[1]):
            out[:, k, t] = reference_from_logp(logp[i, t], logp[j, t])
    return out


@pytest.fixture(scope="module")
def scored() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return (torch.randn(5, 6, 13, generator=gen, dtype=torch.float64) * 1.5).log_softmax(-1)


ALL_PAIRS = [(i, j) for i in range(5) for j in range(5) if i != j] + [(2, 2)]  # 21 pairs


@pytest.mark.parametrize("chunk_size", [1, 4, 8, 100])  # 4 and 8 do not divide 21
def test_pair_divergences_matches_slow_loop(scored, chunk_size):
    d = pair_divergences(scored, ALL_PAIRS, chunk_size=chunk_size)
    assert d.js.shape == d.kl_ab.shape == d.kl_ba.shape == (len(ALL_PAIRS), 6)
    assert d.js.dtype == torch.float64
    expected = slow_pair_reference(scored, ALL_PAIRS)
    got = np.stack([d.js.numpy(), d.kl_ab.numpy(), d.kl_ba.numpy()])
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=ATOL)
    assert (d.js[-1] == 0).all()  # the (2, 2) pair


def test_pair_divergences_tensor_pairs_and_chunking_agree(scored):
    from_list = pair_divergences(scored, ALL_PAIRS, chunk_size=4)
    from_tensor = pair_divergences(scored, torch.tensor(ALL_PAIRS), chunk_size=4)
    int32_pairs = torch.tensor(ALL_PAIRS, dtype=torch.int32)
    one_at_a_time = pair_divergences(scored, int32_pairs, chunk_size=1)
    for name in ("js", "kl_ab", "kl_ba"):
        assert torch.equal(getattr(from_list, name), getattr(from_tensor, name))
        torch.testing.assert_close(getattr(from_list, name), getattr(one_at_a_time, name), rtol=1e-14, atol=0)


def test_pair_divergences_directions(scored):
    d = pair_divergences(scored, [(0, 3), (3, 0)])
    assert torch.equal(d.js[0], d.js[1])
    assert torch.equal(d.kl_ab[0], d.kl_ba[1]) and torch.equal(d.kl_ba[0], d.kl_ab[1])
    single = token_divergences(scored[0], scored[3])
    torch.testing.assert_close(d.kl_ab[0], single.kl_ab, rtol=1e-14, atol=0)


def test_pair_divergences_never_builds_all_pairs_at_once(scored, monkeypatch):
    seen: list[tuple[int, ...]] = []
    real = divergence._divergences

    def spy(la, lb, *args):
        seen.append(tuple(la.shape))
        return real(la, lb, *args)

    monkeypatch.setattr(divergence, "_divergences", spy)
    pair_divergences(scored, ALL_PAIRS, chunk_size=4)
    # One pair at a time over blocks of positions: 5 rows, 6 positions, chunk 4 -> blocks of 4 and 2.
    assert seen == [(4, 13)] * len(ALL_PAIRS) + [(2, 13)] * len(ALL_PAIRS)


@pytest.mark.parametrize(
    "rows, positions, chunk, expected",
    [(5, 6, 4, 4), (12, 48, 4, 4), (12, 2, 4, 1), (12, 8, 1, 1), (2, 48, 4, 4), (40, 48, 4, 4), (200, 10, 4, 1)],
)
def test_positions_per_block_bounds_memory_like_a_chunk_of_pairs(rows, positions, chunk, expected):
    block = divergence.positions_per_block(rows, positions, chunk)
    assert block == expected
    assert 1 <= block <= min(positions, divergence.BLOCK_VECTORS)
    assert block == 1 or rows * block <= chunk * positions  # no more V-vectors than chunk pairs × positions


def test_pair_divergences_float32_input(scored):
    d32 = pair_divergences(scored.float(), ALL_PAIRS[:5])
    d64 = pair_divergences(scored.float().double(), ALL_PAIRS[:5])
    assert torch.equal(d32.js, d64.js) and torch.equal(d32.kl_ab, d64.kl_ab)


def test_pair_divergences_empty_pairs(scored):
    for pairs in ([], torch.empty(0, 2, dtype=torch.long)):
        d = pair_divergences(scored, pairs)
        assert d.js.shape == d.kl_ab.shape == d.kl_ba.shape == (0, 6)


@pytest.mark.parametrize(
    "pairs, error",
    [
        ([(0, 5)], IndexError),
        ([(-1, 2)], IndexError),
        ([(0, 1, 2)], ValueError),
        (torch.tensor([0, 1]), ValueError),
        (torch.tensor([[0.0, 1.0]]), TypeError),
    ],
)
def test_pair_divergences_rejects_bad_pairs(scored, pairs, error):
    with pytest.raises(error):
        pair_divergences(scored, pairs)


def test_pair_divergences_rejects_bad_arguments(scored):
    with pytest.raises(ValueError, match="chunk_size"):
        pair_divergences(scored, [(0, 1)], chunk_size=0)
    with pytest.raises(ValueError, match=r"\[S, T, V\]"):
        pair_divergences(scored[0], [(0, 1)])


# --- the reference itself --------------------------------------------------------------------


def test_reference_closed_forms():
    js, kl_pq, kl_qp = reference_divergences(np.array([0.5, 0.5]), np.array([0.9, 0.1]))
    assert js == pytest.approx(bernoulli_js(0.5, 0.9), rel=1e-14)
    assert kl_pq == pytest.approx(math.log(5 / 3), rel=1e-14)
    assert kl_qp == pytest.approx(bernoulli_kl(0.9, 0.5), rel=1e-14)
    assert reference_divergences(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == (LN2, INF, INF)


def test_reference_rejects_non_distributions():
    with pytest.raises(ValueError):
        reference_divergences(np.array([0.5, 0.6]), np.array([0.5, 0.5]))
    with pytest.raises(ValueError):
        reference_divergences(np.array([0.5, 0.5]), np.array([1.0]))
    with pytest.raises(ValueError):
        reference_divergences(np.array([1.5, -0.5]), np.array([0.5, 0.5]))


def test_inputs_that_track_gradients_are_accepted():
    logits = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    d = token_divergences(logits.log_softmax(-1), logits.detach().flip(-1).log_softmax(-1))
    assert not d.js.requires_grad
    assert torch.isfinite(d.js).all()


def test_reference_handles_subnormal_probabilities():
    tiny = 5e-324  # smallest subnormal: ½·tiny rounds to 0, the mixture must not
    js, kl_pq, kl_qp = reference_divergences(np.array([1.0 - tiny, tiny]), np.array([1.0, 0.0]))
    assert js == pytest.approx(0.0, abs=1e-300)
    assert kl_pq == INF and kl_qp == pytest.approx(0.0, abs=1e-300)
