"""Shared prefixes against whole sequences: the same distributions on a tiny random Llama (float32
and float64), through HFEngine, the packed GPU path (run on CPU) and score_missing."""

from __future__ import annotations

import copy

import pytest
import torch

from persona_assets.measure.divergence import pair_divergences
from persona_assets.measure.divergence_store import DivergenceCache, ResponseJob, batch_end, score_missing
from resources.fast_engine import batch_response_divergences
from resources.hf_engine import HFEngine
from resources.shared_prefix import PrefixMemo, continuation_hidden_states, prefix_pool, response_states

# Prompts of quite different lengths, so rows of one forward have different prefix widths.
SYSTEMS = [
    "You are a pirate.",
    "You are a careful medical doctor who explains things slowly and mentions every risk in detail.",
    "Be brief.",
    "You are a poet who answers in rhyming couplets about the sea.",
]
QUESTIONS = ["What is the moon made of?", "Tell me a story.", "Name a colour."]
NAMES = ("js", "kl_ab", "kl_ba")


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return HFEngine.load(str(tiny_model_dir))


@pytest.fixture(scope="module")
def study(engine):
    """(prompts per question, items): every persona answers every question, 1..19 tokens; pair-own pairs."""
    prompts = [[engine.chat_prompt_ids(s, q) for s in SYSTEMS] for q in QUESTIONS]
    items = []
    for q, scorer_prompts in enumerate(prompts):
        for g in range(len(SYSTEMS)):
            length = 1 + (5 * g + 3 * q) % 19  # 1-token responses included (no continuation at all)
            response = engine.generate([scorer_prompts[g]], max_new_tokens=length)[0].token_ids
            response = (response + [7, 11, 13] * 10)[:length]  # exactly `length` tokens, stop token or not
            items.append((scorer_prompts, response, [(g, o) for o in range(len(SYSTEMS)) if o != g]))
    assert min(len(r) for _, r, _ in items) == 1 and max(len(r) for _, r, _ in items) > 15
    return prompts, items


def _assert_means_close(got, ref, rtol):
    for name in NAMES:
        a, b = getattr(got, name).mean(dim=1), getattr(ref, name).mean(dim=1)
        assert torch.all((a - b).abs() <= rtol * b.abs()), f"{name}: {((a - b).abs() / b.abs()).max():.2e}"


def test_pool_holds_each_distinct_prompt_once_and_its_values_do_not_depend_on_the_others(engine, study):
    prompts, _ = study
    flat = [p for per_question in prompts for p in per_question]
    pool = engine.prefix_pool(flat + flat[:3])
    assert len(pool.index) == len(flat) and pool.lengths == [len(p) for p in flat]
    alone = engine.prefix_pool([flat[5]])
    k, n = pool.index[tuple(flat[5])], len(flat[5])
    assert torch.equal(pool.last_hidden[k], alone.last_hidden[0])
    for layer in range(len(pool.keys)):
        assert torch.equal(pool.keys[layer][k, :, -n:], alone.keys[layer][0, :, -n:])
        assert torch.equal(pool.values[layer][k, :, -n:], alone.values[layer][0, :, -n:])


def _same_pool(a, b) -> bool:
    return (
        a.index == b.index
        and a.lengths == b.lengths
        and torch.equal(a.last_hidden, b.last_hidden)
        and all(torch.equal(x, y) for x, y in zip(a.keys + a.values, b.keys + b.values))
    )


def test_a_pool_from_the_memo_is_the_pool_computed_afresh_bit_for_bit(engine, study):
    prompts, _ = study
    memo = PrefixMemo(1 << 30)
    first = prefix_pool(engine, prompts[0], memo=memo)
    assert _same_pool(first, prefix_pool(engine, prompts[0])) and len(memo) == len(prompts[0])
    # Some prompts stored, some new, in another order: the layout (right-aligned, filler columns)
    # and every value are those of a fresh computation of the same prompts.
    mixed = [prompts[1][2], prompts[0][3], prompts[1][0], prompts[0][1]]
    assert _same_pool(prefix_pool(engine, mixed, memo=memo), prefix_pool(engine, mixed))
    assert len(memo) == len(prompts[0]) + 2


def test_the_engine_runs_no_prompt_of_an_earlier_call_again(engine, study, monkeypatch):
    import resources.shared_prefix as shared_prefix

    prompts, _ = study
    fresh = copy.copy(engine)
    fresh.prefix_memo = PrefixMemo(1 << 30)
    computed = []
    compute = shared_prefix._computed_pool
    monkeypatch.setattr(
        shared_prefix, "_computed_pool", lambda e, unique, m: computed.append(len(unique)) or compute(e, unique, m)
    )
    fresh.prefix_pool(prompts[0])
    fresh.prefix_pool(prompts[0][:2] + prompts[2][:1])
    assert computed == [len(prompts[0]), 1]


def test_the_memo_keeps_precisions_apart(engine, study):
    prompts, _ = study
    memo = PrefixMemo(1 << 30)
    prefix_pool(engine, prompts[0][:2], memo=memo)
    engine64 = HFEngine(copy.deepcopy(engine.model).double(), engine.tokenizer, engine.source, "cpu", "float64")
    pool64 = prefix_pool(engine64, prompts[0][:2], memo=memo)
    assert pool64.keys[0].dtype == torch.float64 and len(memo) == 4


def test_the_memo_drops_the_least_recently_used_past_its_budget(engine, study):
    prompts, _ = study
    first, second, third = prompts[0][:3]
    sizes = []
    for prompt in (first, second, third):
        alone = PrefixMemo(1 << 30)
        prefix_pool(engine, [prompt], memo=alone)
        sizes.append(alone.nbytes)
    memo = PrefixMemo(sum(sizes) - 1)  # room for any two of them, not for all three
    key = lambda prompt: memo.key(engine, tuple(prompt))  # noqa: E731
    prefix_pool(engine, [first], memo=memo)
    prefix_pool(engine, [second], memo=memo)
    assert memo.get(key(first)) is not None  # used again: `second` is now the oldest
    prefix_pool(engine, [third], memo=memo)
    assert memo.get(key(second)) is None and memo.get(key(first)) is not None and memo.get(key(third)) is not None
    assert memo.nbytes == sizes[0] + sizes[2] <= memo.max_bytes


def test_a_memo_takes_only_prompts_run_alone(engine, study):
    prompts, _ = study
    with pytest.raises(ValueError, match="run alone"):
        prefix_pool(engine, prompts[0], max_batch_tokens=400, memo=PrefixMemo(1 << 30))


def test_divergences_from_logits_are_those_of_their_log_probs(engine, study):
    prompts, items = study
    pool = engine.prefix_pool([p for per_question in prompts for p in per_question])
    for scorer_prompts, response, pairs in items[:4]:
        logits = engine.response_logits(scorer_prompts, response, prefixes=pool)
        logp = engine.response_logprobs(scorer_prompts, response, prefixes=pool)
        assert logits.dtype == torch.float32 and torch.equal(torch.log_softmax(logits, dim=-1), logp)
        # pair_divergences renormalises in float64: the float32 log_softmax only adds its rounding
        _assert_means_close(pair_divergences(logits, pairs), pair_divergences(logp, pairs), rtol=1e-4)


def test_logits_written_into_a_reused_buffer_are_the_heads_own(engine, study):
    from persona_assets.measure.divergence import DivergenceWorkspace

    prompts, items = study
    pool = engine.prefix_pool([p for per_question in prompts for p in per_question])
    workspace = DivergenceWorkspace()  # as LLMResource.response_divergences: one buffer, longest response first
    for scorer_prompts, response, _ in sorted(items, key=lambda item: -len(item[1]))[:3]:
        out = workspace.take("logits", (len(SYSTEMS), len(response), engine.vocab_size), torch.float32)
        logits = engine.response_logits(scorer_prompts, response, prefixes=pool, out=out)
        assert logits.data_ptr() == out.data_ptr() == workspace._buffers["logits"].data_ptr()
        assert torch.equal(logits, engine.response_logits(scorer_prompts, response, prefixes=pool))


def test_shared_logprobs_match_whole_sequences(engine, study):
    prompts, items = study
    pool = engine.prefix_pool([p for per_question in prompts for p in per_question])
    for scorer_prompts, response, pairs in items:
        whole = engine.response_logprobs(scorer_prompts, response)
        shared = engine.response_logprobs(scorer_prompts, response, prefixes=pool)
        assert shared.shape == whole.shape == (len(SYSTEMS), len(response), engine.vocab_size)
        torch.testing.assert_close(shared, whole, atol=1e-4, rtol=0)
        # response means: float32 rounding only (measured ~1e-6 relative on this model)
        _assert_means_close(pair_divergences(shared, pairs), pair_divergences(whole, pairs), rtol=2e-5)


def test_shared_states_equal_whole_sequence_states_in_float64(engine, study):
    """In float64 the two paths agree to ~1e-13: the sharing itself loses nothing."""
    prompts, items = study
    model64 = copy.deepcopy(engine.model).double()
    engine64 = HFEngine(model64, engine.tokenizer, engine.source, "cpu", "float64")
    pool = prefix_pool(engine64, prompts[1], max_batch_tokens=10_000)  # prefixes padded together
    for scorer_prompts, response, _ in items[4:8]:
        rows = pool.rows(scorer_prompts)
        continuation = continuation_hidden_states(engine64, pool, rows, [response[:-1]] * len(rows))
        shared = response_states(pool, rows, continuation, len(response))
        for s, prompt in enumerate(scorer_prompts):
            with torch.inference_mode():
                hidden = engine64._decoder()(input_ids=torch.tensor([prompt + response[:-1]])).last_hidden_state[0]
            whole = hidden[len(prompt) - 1 : len(prompt) - 1 + len(response)]
            torch.testing.assert_close(shared[s], whole, atol=1e-11, rtol=0)


@pytest.mark.parametrize("max_batch_tokens", [60, 400, 1 << 20])
def test_packed_shared_prefixes_match_the_packed_whole_sequences(engine, study, max_batch_tokens):
    """Several responses (other questions, other lengths) per forward, each row after its own prefix."""
    _, items = study
    whole = batch_response_divergences(engine, items, max_batch_tokens=max_batch_tokens, backend="torch")
    shared = batch_response_divergences(
        engine, items, max_batch_tokens=max_batch_tokens, backend="torch", shared_prefixes=True
    )
    assert len(shared) == len(items)
    for (_, response, pairs), got, ref in zip(items, shared, whole):
        assert got.js.shape == ref.js.shape == (len(pairs), len(response))
        for name in NAMES:
            torch.testing.assert_close(getattr(got, name), getattr(ref, name), rtol=1e-4, atol=1e-6)
        _assert_means_close(got, ref, rtol=2e-5)


class RecordingScorer:
    """The CPU resource's loop (HFEngine + shared prefixes per call), recording each call's items."""

    def __init__(self, engine, shared: bool):
        self.engine, self.shared_prefixes, self.calls = engine, shared, []

    def batch_response_divergences(self, items, *, pair_chunk_size, progress=None):
        self.calls.append(items)
        pool = (
            self.engine.prefix_pool([p for prompts, _, _ in items for p in prompts]) if self.shared_prefixes else None
        )
        return [
            pair_divergences(self.engine.response_logprobs(p, r, prefixes=pool), pairs, chunk_size=pair_chunk_size)
            for p, r, pairs in items
        ]


def _jobs(study):
    prompts, items = study
    jobs = []
    for k, (scorer_prompts, response, pairs) in enumerate(items):
        q = prompts.index(scorer_prompts)
        jobs.append(ResponseJob(f"{k:064x}", list(response), dict(enumerate(scorer_prompts)), pairs, question_index=q))
    # persona-major, as the generations list them: consecutive jobs answer other questions
    return sorted(jobs, key=lambda job: (job.pairs[0][0], job.question_index))


def test_score_missing_groups_the_responses_to_one_question_into_calls(engine, study, tmp_path):
    jobs = _jobs(study)
    scorer = RecordingScorer(engine, shared=True)
    score_missing(scorer, jobs, DivergenceCache(tmp_path / "shared"), max_scorers_per_pass=12, responses_per_batch=4)
    assert [len(items) for items in scorer.calls] == [4, 4, 4]
    for items in scorer.calls:  # one question per call: its 4 prompts, not 4 questions' 16
        assert len({tuple(p) for prompts, _, _ in items for p in prompts}) == len(SYSTEMS)

    whole = RecordingScorer(engine, shared=False)
    score_missing(whole, jobs, DivergenceCache(tmp_path / "whole"), max_scorers_per_pass=12, responses_per_batch=4)
    for job in jobs:
        got = DivergenceCache(tmp_path / "shared").get(job.key)["pairs"]
        ref = DivergenceCache(tmp_path / "whole").get(job.key)["pairs"]
        assert got.keys() == ref.keys()
        for pair in ref:
            for name in NAMES:
                assert got[pair][name] == pytest.approx(ref[pair][name], rel=2e-5)


def test_score_missing_ends_a_batch_before_a_question_it_would_split(engine, study, tmp_path):
    # 6 per batch, 4 responses per question: batches of 4 (each question's prompts computed in one
    # call only), not 6 + 6 (the middle question's prompts in two calls).
    shared = RecordingScorer(engine, shared=True)
    score_missing(
        shared, _jobs(study), DivergenceCache(tmp_path / "shared"), max_scorers_per_pass=12, responses_per_batch=6
    )
    assert [len(items) for items in shared.calls] == [4, 4, 4]
    whole = RecordingScorer(engine, shared=False)  # no prefixes to share: full batches
    score_missing(
        whole, _jobs(study), DivergenceCache(tmp_path / "whole"), max_scorers_per_pass=12, responses_per_batch=6
    )
    assert [len(items) for items in whole.calls] == [6, 6]


@pytest.mark.parametrize(
    "groups, size, ends",
    [
        ("aaaabbbbcccc", 6, [4, 8, 12]),
        ("aaaabbbbcccc", 8, [8, 12]),  # two whole groups fit
        ("aaaaaaabbc", 4, [4, 7, 10]),  # a group larger than the batch is split, then whole groups
        ("abc", 16, [3]),
    ],
)
def test_batch_end_keeps_groups_whole(groups, size, ends):
    got, start = [], 0
    while start < len(groups):
        start = batch_end(list(groups), start, size, whole_groups=True)
        got.append(start)
    assert got == ends
    assert batch_end(list(groups), 0, size, whole_groups=False) == min(size, len(groups))


@pytest.mark.slow
def test_shared_prefixes_on_the_real_embedded_model():
    """SmolLM2-135M in float32: response means within float32 rounding of the whole sequences
    (measured at most 6.2e-6 relative on configs/demo.yaml, benchmarks/cpu_shared_prefixes.py)."""
    real = HFEngine.load("embedded")
    prompts = [real.chat_prompt_ids(s, QUESTIONS[0]) for s in SYSTEMS]
    response = real.generate([prompts[0]], max_new_tokens=16)[0].token_ids
    pairs = [(0, 1), (0, 2), (0, 3), (1, 2)]
    whole = pair_divergences(real.response_logprobs(prompts, response), pairs)
    shared = pair_divergences(real.response_logprobs(prompts, response, prefixes=real.prefix_pool(prompts)), pairs)
    _assert_means_close(shared, whole, rtol=2e-5)
