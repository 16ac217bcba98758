"""Faults in the model steps, provoked on copies of the tiny real model.

- NaN/inf logits stop the teacher forcing with an error naming the response (generator,
  question), the scoring persona and the token position; nothing poisoned reaches the cache.
- Empty and length-limited responses are counted, named and block the divergences.
- Out of memory (a real forward made to raise `torch.OutOfMemoryError` above a size) halves the
  batch and gives the results of a run configured at the smaller size, bit for bit.
"""

from __future__ import annotations

import json
import re
import math
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import torch

from persona_assets.measure.divergence_store import DivergenceCache, ResponseJob, score_missing
from persona_assets.inputs.response_quality import response_quality
from persona_assets.measure.scoring_faults import NonFiniteLogitsError, TeacherForcingError
from persona_assets.environment import storage_resources
from resources.fast_divergence import fast_pair_divergences
from resources.fast_engine import batch_response_divergences
from tests.run_results import materializations
from resources.llm import CpuLLM

NAMES = ["pirate", "accountant", "poet"]
SYSTEM_PROMPTS = ["You are a pirate.", "You are a careful accountant.", "You are a poet who loves velvet."]
QUESTIONS = ["What is rain?", "How do I sort a list?"]
BAD_TOKEN = 300  # the token whose embedding is NaN in `nan_embedding_model`


def faulty_copy(tiny_model_dir: Path, destination: Path, edit) -> Path:
    """A copy of the tiny model (tokenizer included) with `edit(model)` applied to its weights."""
    from transformers import LlamaForCausalLM

    shutil.copytree(tiny_model_dir, destination)
    model = LlamaForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        edit(model)
    model.save_pretrained(destination)
    return destination


def nan_embedding(model) -> None:
    # Untied first: with the tied LM head a NaN row would poison every logit row, not just the
    # positions that see the token.
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(model.model.embed_tokens.weight.detach().clone())
    model.model.embed_tokens.weight[BAD_TOKEN] = float("nan")


def jobs_for(
    llm: CpuLLM, responses: dict[tuple[int, int], list[int]], system_prompts=SYSTEM_PROMPTS
) -> list[ResponseJob]:
    """Pair-own jobs for (generator, question) → response ids."""
    jobs = []
    for (g, q), ids in responses.items():
        prompts = {s: llm.chat_prompt_ids(p, QUESTIONS[q]) for s, p in enumerate(system_prompts)}
        pairs = [(g, o) for o in range(len(system_prompts)) if o != g]
        key = f"{g}{q}{len(ids)}".ljust(64, "0")
        jobs.append(ResponseJob(key, ids, prompts, pairs, names=dict(enumerate(NAMES)), generator=g, question_index=q))
    return jobs


def cache_texts(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(directory.glob("*/*.json"))}


# ------------------------------------------------------------------------------- NaN / inf
@pytest.mark.parametrize("bad_value", [float("nan"), float("inf")])
def test_fast_divergences_name_the_scorer_and_position_of_broken_logits(bad_value):
    logits = torch.randn(3, 5, 50)
    logits[2, 3, 7] = bad_value
    with pytest.raises(NonFiniteLogitsError) as raised:
        fast_pair_divergences(logits, [(0, 1), (0, 2)], backend="torch")
    assert (raised.value.scorer, raised.value.position) == (2, 3)


def test_an_all_minus_inf_row_is_broken_too():
    logits = torch.randn(2, 4, 50)
    logits[1, 0] = -math.inf
    with pytest.raises(NonFiniteLogitsError) as raised:
        fast_pair_divergences(logits, [(0, 1)], backend="torch")
    assert (raised.value.scorer, raised.value.position) == (1, 0)


@pytest.mark.parametrize(
    "case, response, expected",
    [
        # a NaN token in the response breaks every scorer's row (attention weights of 0 times a NaN
        # value are NaN, so it reaches the earlier response positions too): the first scorer is
        # named. Position 0 stays finite: with shared prefixes it is the prompt's last state, from
        # the prompt's own forward, which never sees the response.
        ("response", [101, 102, BAD_TOKEN, 104, 105], "under persona 'poet' at response token position 1"),
        # a system prompt holding the NaN token breaks that scorer from position 0 on
        ("system prompt", [101, 102, 103], "under persona 'accountant' at response token position 0"),
    ],
)
def test_nan_logits_stop_scoring_with_names_and_keep_the_cache_clean(
    tiny_model_dir, tmp_path, case, response, expected
):
    llm = CpuLLM(model=str(faulty_copy(tiny_model_dir, tmp_path / "nan-model", nan_embedding)))
    prompts = list(SYSTEM_PROMPTS)
    if case == "system prompt":
        prompts[1] = llm.tokenizer.decode([BAD_TOKEN]) + " " + prompts[1]
        assert BAD_TOKEN in llm.chat_prompt_ids(prompts[1], QUESTIONS[1])
    good = jobs_for(llm, {(0, 0): [101, 102, 103]})  # pirate vs accountant/poet, no NaN token anywhere
    bad = jobs_for(llm, {(2, 1): response}, system_prompts=prompts)
    cache = DivergenceCache(tmp_path / "cache")
    score_missing(llm, good, cache, max_scorers_per_pass=12, responses_per_batch=1)
    before = cache_texts(cache.directory)
    assert len(before) == 1 and "NaN" not in next(iter(before.values()))

    with pytest.raises(TeacherForcingError) as raised:
        score_missing(llm, good + bad, cache, max_scorers_per_pass=12, responses_per_batch=1)
    message = str(raised.value)
    assert "non-finite logits" in message and "the response of 'poet' to question 1" in message
    assert expected in message
    assert cache_texts(cache.directory) == before  # the good entry stays, nothing poisoned was added


def test_the_packed_engine_names_the_broken_item(tiny_model_dir, tmp_path):
    llm = CpuLLM(model=str(faulty_copy(tiny_model_dir, tmp_path / "nan-model", nan_embedding)))
    prompts = [llm.chat_prompt_ids(p, QUESTIONS[0]) for p in SYSTEM_PROMPTS]
    items = [(prompts, [101, 102, 103], [(0, 1)]), (prompts, [101, BAD_TOKEN, 103], [(0, 1), (0, 2)])]
    with pytest.raises(NonFiniteLogitsError) as raised:
        batch_response_divergences(llm.engine, items, backend="torch")
    assert (raised.value.item, raised.value.scorer, raised.value.position) == (1, 0, 0)


def test_a_cache_entry_holding_nan_is_never_trusted_nor_written(tmp_path):
    cache = DivergenceCache(tmp_path)
    with pytest.raises(ValueError, match="NaN"):
        cache.put("ab" * 32, {"n_tokens": 3, "pairs": {"p": {"js": float("nan"), "kl_ab": 0.1, "kl_ba": 0.1}}})
    assert len(cache) == 0
    path = tmp_path / "ab" / ("ab" * 32 + ".json")
    path.parent.mkdir()
    path.write_text(json.dumps({"n_tokens": 3, "pairs": {"p": {"js": float("nan"), "kl_ab": 0.1, "kl_ba": 0.1}}}))
    assert cache.get("ab" * 32) is None
    cache.put("cd" * 32, {"n_tokens": 3, "pairs": {"p": {"js": 0.1, "kl_ab": math.inf, "kl_ba": 0.1}}})
    assert cache.get("cd" * 32)["pairs"]["p"]["kl_ab"] == math.inf  # KL may be +inf; only NaN is poison


def _materialize(assets, model_dir, ops, selection=None):
    if selection is not None:  # config only for the selected steps
        ops = {name: op for name, op in ops.items() if name in {k.path[-1] for a in selection for k in a.keys}}
    return dg.materialize(
        assets,
        resources={"llm": CpuLLM(model=str(model_dir)), **storage_resources()},
        run_config=dg.RunConfig(ops=ops),
        selection=selection,
        raise_on_error=False,
    )


def _failure_message(result, step: str) -> str:
    failures = [e for e in result.all_events if e.is_step_failure and e.step_key == step]
    assert failures, f"{step} did not fail"
    error = failures[0].step_failure_data.error
    return "\n".join(e.message for e in (error, error.cause) if e is not None)


def test_graph_with_nan_weights_names_the_persona_in_divergences_and_cosine(tiny_model_dir, tmp_path):
    from persona_assets.assets.divergence_matrices import divergence_matrices
    from persona_assets.assets.eval_set import eval_set
    from persona_assets.assets.generations import generations
    from persona_assets.assets.persona_cosine import persona_cosine

    assets = [eval_set, generations, divergence_matrices, persona_cosine]
    ops = {
        "eval_set": {"config": {"personas": ["villain", "comedian"], "n_questions": 1}},
        "generations": {"config": {"max_new_tokens": 4}},
        "persona_cosine": {"config": {"layers": [1]}},
    }
    assert _materialize(assets, tiny_model_dir, ops, selection=[eval_set, generations]).success

    def nan_layer(model):
        model.model.layers[0].mlp.down_proj.weight[:] = float("nan")

    broken = faulty_copy(tiny_model_dir, tmp_path / "nan-layer", nan_layer)
    result = _materialize(assets, broken, ops, selection=[divergence_matrices, persona_cosine])
    assert not result.success
    message = _failure_message(result, "divergence_matrices.score_divergence_shard[shard_0]")
    # Which response is scored first depends on the grouping by prompts; whichever it is, it is named.
    named = re.search(
        r"the response of '(\w+)' to question 0 .*under persona '(\w+)' at response token position \d+", message
    )
    assert "non-finite logits" in message and named, message
    assert {named.group(1), named.group(2)} <= {"villain", "comedian"}
    assert "persona 'villain', question 0, layer 1 is not finite" in _failure_message(result, "persona_cosine")
    cache_dir = Path(tmp_path / "data" / "cache" / "divergences")
    assert not any("NaN" in text for text in cache_texts(cache_dir).values())


# ---------------------------------------------------------------------- empty / length-limited
def test_zeroed_final_norm_gives_empty_length_limited_responses_that_block_divergences(tiny_model_dir, tmp_path):
    from persona_assets.checks import no_empty_responses
    from persona_assets.assets.divergence_matrices import divergence_matrices
    from persona_assets.assets.eval_set import eval_set
    from persona_assets.assets.generations import generations

    def zero_norm(model):  # all-zero logits: greedy picks token 0 forever, which decodes to ""
        model.model.norm.weight.zero_()

    broken = faulty_copy(tiny_model_dir, tmp_path / "zero-norm", zero_norm)
    ops = {
        "eval_set": {"config": {"personas": ["villain", "comedian"], "n_questions": 1}},
        "generations": {"config": {"max_new_tokens": 3}},
    }
    result = _materialize([eval_set, generations, divergence_matrices, no_empty_responses], broken, ops)
    check = {e.check_name: e for e in result.get_asset_check_evaluations()}["no_empty_responses"]
    assert not check.passed
    assert "2 empty responses" in check.description and "villain/q0, comedian/q0" in check.description
    assert "100% stopped at max_new_tokens" in check.description
    metadata = result.asset_materializations_for_node("generations")[0].metadata
    assert metadata["n_empty"].value == 2 and metadata["hit_max_new_tokens_share"].value == 1.0
    assert not materializations(result, "divergence_matrices")  # blocked, never scored


def test_response_quality_counts_empty_and_length_limited():
    responses = [
        {"persona": "a", "question_index": 0, "n_tokens": 0, "text": "", "hit_max_new_tokens": False},
        {"persona": "a", "question_index": 1, "n_tokens": 4, "text": "  ", "hit_max_new_tokens": True},
        {"persona": "b", "question_index": 0, "n_tokens": 4, "text": "hi", "hit_max_new_tokens": True},
        {"persona": "b", "question_index": 1, "n_tokens": 2, "text": "ok", "hit_max_new_tokens": False},
    ]
    quality = response_quality(responses)
    assert quality["empty"] == ["a/q0", "a/q1"] and quality["hit_max_new_tokens_share"] == 0.5


def test_an_empty_response_stops_scoring_before_the_model_loads(tiny_model_dir):
    llm = CpuLLM(model=str(tiny_model_dir))
    jobs = jobs_for(llm, {(0, 0): [101, 102], (1, 1): []})
    loaded = []
    with pytest.raises(TeacherForcingError, match=r"empty responses .*the response of 'accountant' to question 1"):
        score_missing(
            llm,
            jobs,
            DivergenceCache(Path("unused")),
            max_scorers_per_pass=12,
            responses_per_batch=4,
            prepare=lambda: loaded.append(1),
        )
    assert not loaded


# --------------------------------------------------------------------------- out of memory
def fail_above(decoder, limit: int, size) -> None:
    """Make the real decoder raise torch.OutOfMemoryError when size(input_ids) exceeds `limit`."""
    forward = decoder.forward

    def limited(*args, input_ids=None, **kwargs):
        if size(input_ids) > limit:
            raise torch.OutOfMemoryError(f"injected: {tuple(input_ids.shape)} above {limit}")
        return forward(*args, input_ids=input_ids, **kwargs)

    decoder.forward = limited


def _all_responses() -> dict:
    return {(g, q): [101 + g, 150 + q, 200, 250] for g in range(3) for q in range(2)}


def test_out_of_memory_halves_the_scorers_per_pass_and_matches_that_setting(tiny_model_dir, tmp_path):
    llm = CpuLLM(model=str(tiny_model_dir))
    jobs = jobs_for(llm, _all_responses())
    reference = DivergenceCache(tmp_path / "reference")
    score_missing(llm, jobs, reference, max_scorers_per_pass=2, responses_per_batch=4)
    fail_above(llm.engine._decoder(), 2, lambda ids: ids.shape[0])  # at most two sequences per forward
    warnings = []
    faulted = DivergenceCache(tmp_path / "faulted")
    stats = score_missing(llm, jobs, faulted, max_scorers_per_pass=12, responses_per_batch=4, warn=warnings.append)
    assert cache_texts(faulted.directory) == cache_texts(reference.directory)  # bit for bit
    assert stats.responses_computed == len(jobs) and stats.teacher_forced_sequences == 4 * len(jobs)
    assert any("out of accelerator memory" in w and "2 scorers per pass" in w for w in warnings)
    assert any("halved the batch, retrying with 1 responses per batch" in w for w in warnings)


def test_out_of_memory_for_a_single_pair_fails_clearly(tiny_model_dir, tmp_path):
    llm = CpuLLM(model=str(tiny_model_dir))
    fail_above(llm.engine._decoder(), 1, lambda ids: ids.shape[0])
    cache = DivergenceCache(tmp_path / "cache")
    with pytest.raises(TeacherForcingError, match=r"out of accelerator memory .*'pirate' to question 0.*does not fit"):
        score_missing(llm, jobs_for(llm, _all_responses()), cache, max_scorers_per_pass=12, responses_per_batch=2)
    assert len(cache) == 0


class PackedCpuScorer:
    """The GPU resource's packed teacher forcing (several responses per forward), on the CPU engine."""

    def __init__(self, engine):
        self.engine = engine

    def batch_response_divergences(self, items, *, pair_chunk_size):
        return batch_response_divergences(self.engine, items, max_batch_tokens=1 << 20, backend="torch")


def test_out_of_memory_halves_the_responses_per_packed_forward(tiny_model_dir, tmp_path):
    llm = CpuLLM(model=str(tiny_model_dir))
    jobs = jobs_for(llm, {key: ids for key, ids in _all_responses().items() if key[0] < 2})
    scorer = PackedCpuScorer(llm.engine)
    reference = DivergenceCache(tmp_path / "reference")
    score_missing(scorer, jobs, reference, max_scorers_per_pass=12, responses_per_batch=1)
    fail_above(llm.engine._decoder(), 3, lambda ids: ids.shape[0])  # one response (3 scorers) per forward
    warnings = []
    faulted = DivergenceCache(tmp_path / "faulted")
    score_missing(scorer, jobs, faulted, max_scorers_per_pass=12, responses_per_batch=4, warn=warnings.append)
    assert cache_texts(faulted.directory) == cache_texts(reference.directory)
    assert [w.split(";")[0] for w in warnings] == [
        f"teacher forcing: out of accelerator memory with {n} responses per batch, passes of up to 3 scorers"
        for n in (4, 2)
    ]
    assert np.isfinite(
        [
            v
            for t in cache_texts(faulted.directory).values()
            for p in json.loads(t)["pairs"].values()
            for v in p.values()
        ]
    ).all()


def test_generation_out_of_memory_halves_the_batch_and_matches_that_setting(tiny_model_dir):
    from persona_assets.measure.scoring_faults import halving_batch_on_out_of_memory

    llm = CpuLLM(model=str(tiny_model_dir))
    prompts = [llm.chat_prompt_ids(p, q) for p in SYSTEM_PROMPTS for q in QUESTIONS]
    reference = llm.generate(prompts, max_new_tokens=4, batch_size=2)
    fail_above(llm.engine.model, 2, lambda ids: ids.shape[0])  # at most two prompts per forward
    warnings = []
    got = halving_batch_on_out_of_memory(
        lambda batch_size: llm.generate(prompts, max_new_tokens=4, batch_size=batch_size),
        8,
        what="generation",
        warn=warnings.append,
    )
    assert got == reference
    assert warnings == [
        f"generation: out of accelerator memory; halved the batch, retrying with batch_size {n}" for n in (4, 2)
    ]
    fail_above(llm.engine.model, 0, lambda ids: ids.shape[0])  # nothing fits
    with pytest.raises(RuntimeError, match="generation: out of accelerator memory even with a batch of one"):
        halving_batch_on_out_of_memory(
            lambda batch_size: llm.generate(prompts, max_new_tokens=4, batch_size=batch_size), 2, what="generation"
        )


def test_the_generations_step_halves_its_batch_on_out_of_memory(tiny_model_dir, tmp_path, monkeypatch):
    """Through the asset: its generation call is the halving one, and the warning reaches the run's log."""
    import logging

    from transformers import LlamaForCausalLM

    from persona_assets.assets.eval_set import eval_set
    from persona_assets.assets.generations import generations

    def ops(batch_size):
        return {
            "eval_set": {"config": {"personas": ["villain", "comedian", "assistant"], "n_questions": 2}},
            "generations": {"config": {"max_new_tokens": 4, "batch_size": batch_size}},
        }

    monkeypatch.setenv("PERSONA_DATA_DIR", str(tmp_path / "reference"))
    reference = _materialize([eval_set, generations], tiny_model_dir, ops(2))
    assert reference.success
    forward = LlamaForCausalLM.forward

    def at_most_two_prompts(self, *args, input_ids=None, **kwargs):
        if input_ids is not None and input_ids.shape[0] > 2:
            raise torch.OutOfMemoryError(f"injected: {tuple(input_ids.shape)}")
        return forward(self, *args, input_ids=input_ids, **kwargs)

    monkeypatch.setattr(LlamaForCausalLM, "forward", at_most_two_prompts)
    monkeypatch.setenv("PERSONA_DATA_DIR", str(tmp_path / "faulted"))
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [eval_set, generations],
        resources={"llm": CpuLLM(model=str(tiny_model_dir)), **storage_resources()},
        run_config=dg.RunConfig(ops=ops(8)),
        instance=instance,
        raise_on_error=False,
    )
    assert result.success
    warnings = [e.user_message for e in instance.all_logs(result.run_id) if e.level == logging.WARNING]
    assert [w for w in warnings if "out of accelerator memory" in w] == [
        f"generation: out of accelerator memory; halved the batch, retrying with batch_size {n}" for n in (4, 2)
    ]
    assert result.output_for_node("generations")["responses"] == reference.output_for_node("generations")["responses"]
