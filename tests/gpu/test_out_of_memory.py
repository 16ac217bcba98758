"""Out of GPU memory for real: with most of the free memory taken, scoring a batch that cannot fit
halves the responses per packed forward (saying so) and gives bit for bit the results of a run
that used the smaller batch from the start. The memory is given back afterwards.

The model is a random-weight Qwen2 wide enough (hidden 2048, MLP 8192) that the packed forward's
activations grow with the batch, so "cannot fit" is a matter of batch size, not of one response.
"""

from __future__ import annotations

import re

import pytest
import torch

from persona_assets.measure.divergence_store import DivergenceCache, ResponseJob, score_missing
from tests.gpu import ON_GPU
from tests.gpu.token_engine import PackedScorer, random_ids, random_qwen2_engine

pytestmark = ON_GPU
N_RESPONSES, N_SCORERS, RESPONSE_TOKENS, PROMPT_TOKENS = 16, 6, 200, 30
MiB = 1 << 20


@pytest.fixture(scope="module")
def wide_engine():
    engine = random_qwen2_engine("bfloat16", vocab=16384, hidden=2048, intermediate=8192, layers=2)
    yield engine
    del engine.model
    torch.cuda.empty_cache()


def _jobs(vocab: int) -> list[ResponseJob]:
    """Responses and prompts of one length each, so every batch of a size needs the same memory."""
    gen = torch.Generator().manual_seed(11)
    prompts = {s: random_ids(gen, PROMPT_TOKENS, vocab) for s in range(N_SCORERS)}
    jobs = []
    for r in range(N_RESPONSES):
        generator = r % N_SCORERS
        pairs = [(generator, k) for k in range(N_SCORERS) if k != generator]
        jobs.append(ResponseJob(f"{r:02x}" * 32, random_ids(gen, RESPONSE_TOKENS, vocab), prompts, pairs))
    return jobs


def _score(scorer, jobs, directory, responses_per_batch: int, warn=None) -> int:
    """Score into a fresh cache; returns the peak GPU memory the scoring added (bytes)."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    score_missing(
        scorer,
        jobs,
        DivergenceCache(directory),
        max_scorers_per_pass=N_SCORERS,
        responses_per_batch=responses_per_batch,
        warn=warn,
    )
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def _texts(directory) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(directory.glob("*/*.json"))}


def test_real_out_of_memory_halves_the_packed_batch_and_matches_that_setting(wide_engine, tmp_path):
    scorer = PackedScorer(wide_engine, max_batch_tokens=1 << 24)  # a batch of responses is one forward
    jobs = _jobs(wide_engine.vocab_size)
    peak_one = _score(scorer, jobs, tmp_path / "warm_one", 1)  # also compiles the kernels
    peak_all = _score(scorer, jobs, tmp_path / "warm_all", N_RESPONSES)
    print(
        f"peak beyond the weights: {peak_one / MiB:.0f} MiB at 1 response per forward, "
        f"{peak_all / MiB:.0f} MiB at {N_RESPONSES}"
    )
    assert peak_all > 3 * peak_one, "the packed forward's memory must grow with the batch for this test"

    # Leave free about twice what one response needs: one fits, all of them do not.
    margin = 2 * peak_one + 64 * MiB
    warnings: list[str] = []
    torch.cuda.empty_cache()
    free, total = torch.cuda.mem_get_info()
    hog = torch.empty(free - margin, dtype=torch.uint8, device="cuda")
    try:
        print(f"holding {hog.numel() / MiB:.0f} MiB of {total / MiB:.0f} MiB; {margin / MiB:.0f} MiB left free")
        _score(scorer, jobs, tmp_path / "pressured", N_RESPONSES, warn=warnings.append)
    finally:
        del hog
        torch.cuda.empty_cache()
    assert torch.cuda.mem_get_info()[0] >= free - 256 * MiB, "the held memory must be given back"

    print("\n".join(warnings))
    assert warnings and all("out of accelerator memory" in w for w in warnings)
    assert all(w.endswith(f"{N_SCORERS} scorers per pass") for w in warnings), "one response must still fit whole"
    assert warnings[0].startswith(f"teacher forcing: out of accelerator memory with {N_RESPONSES} responses per batch")
    sizes = [int(re.search(r"retrying with (\d+) responses per batch", w).group(1)) for w in warnings]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] >= 1
    final = sizes[-1]
    assert final < N_RESPONSES
    # The same run with the smaller batch from the start, no pressure: the same bytes.
    _score(scorer, jobs, tmp_path / "reference", final)
    pressured, reference = _texts(tmp_path / "pressured"), _texts(tmp_path / "reference")
    assert len(pressured) == N_RESPONSES and pressured == reference
