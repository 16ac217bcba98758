"""A reused DivergenceWorkspace changes where the buffers live, never the numbers or their size."""

import math

import torch

from persona_assets.measure.divergence import DivergenceWorkspace, pair_divergences, token_divergences


def _logp(seqs: int, positions: int, vocab: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(seqs, positions, vocab, generator=gen) * 3
    logits[1, 0, :5] = -math.inf  # zeros of one distribution only: KL = +inf paths
    logits[2, -1, 7:9] = -math.inf
    logits[0, 0, 10] = -math.inf
    return torch.log_softmax(logits, dim=-1)


def _same(a, b) -> bool:
    return all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("js", "kl_ab", "kl_ba"))


def test_reused_workspace_gives_bit_identical_results_across_shapes_and_dtypes():
    workspace = DivergenceWorkspace()
    cases = [
        (12, 8, 512, [(0, o) for o in range(1, 12)], 4),  # last chunk smaller than the rest
        (5, 3, 300, [(0, 1), (2, 3), (4, 4), (1, 0)], 2),  # shorter response: views into larger buffers
        (12, 11, 512, [(3, o) for o in range(12) if o != 3], 4),  # longer response: buffers grow
    ]
    for seed, (seqs, positions, vocab, pairs, chunk) in enumerate(cases):
        logp = _logp(seqs, positions, vocab, seed)
        for inputs in (logp, logp.double()):
            fresh = pair_divergences(inputs, pairs, chunk_size=chunk)
            reused = pair_divergences(inputs, pairs, chunk_size=chunk, workspace=workspace)
            assert _same(fresh, reused)
            if seed == 0:  # persona 1 gives zero probability to tokens persona 0 does not
                assert torch.isinf(reused.kl_ab[0, 0]) and torch.isfinite(reused.js[0, 0])
            a, b = pairs[0]
            one = token_divergences(inputs[a], inputs[b])
            assert torch.equal(one.js, reused.js[0]) and torch.equal(one.kl_ab, reused.kl_ab[0])


def test_token_divergences_with_workspace_broadcasts_like_without():
    la = torch.log_softmax(torch.randn(3, 1, 50), -1)
    lb = torch.log_softmax(torch.randn(1, 4, 50), -1)
    assert _same(token_divergences(la, lb), token_divergences(la, lb, workspace=DivergenceWorkspace()))


def test_workspace_allocates_once_for_repeated_passes():
    workspace = DivergenceWorkspace()
    logp = _logp(12, 8, 512, 0)
    pairs = [(0, o) for o in range(1, 12)]
    pair_divergences(logp, pairs, chunk_size=4, workspace=workspace)
    size = workspace.nbytes
    pointers = {name: buffer.data_ptr() for name, buffer in workspace._buffers.items()}
    for _ in range(3):
        pair_divergences(_logp(12, 8, 512, 1), pairs, chunk_size=4, workspace=workspace)
    assert workspace.nbytes == size
    assert {name: buffer.data_ptr() for name, buffer in workspace._buffers.items()} == pointers
    # One block's worth (12 rows × 2 positions: chunk 4 × 8 positions / 12 rows): the rows'
    # log-probs and probabilities in float64 (cast straight from the input: every row is used) and
    # their zero mask; per pair t, terms and log1p(exp(−|t|)) in float64 and one bool mask of [2, 512].
    assert size == 12 * 2 * 512 * (2 * 8 + 1) + 2 * 512 * (3 * 8 + 1)
