"""The within-persona baseline's teacher forcing on the tiny real-architecture model: a paraphrase identical
to the prompt gives JS = 0 exactly, a real paraphrase the value of a direct teacher forcing of the same
response under the two prompts, the cache resumes, and the aggregation follows the output JS."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from persona_assets.measure.divergence import pair_divergences
from persona_assets.measure.divergence_store import DivergenceCache, cached_rows, score_missing
from persona_assets.measure.paraphrase_scoring import (
    paraphrase_jobs,
    paraphrase_rows,
    paraphrases_used,
    within_persona_per_question,
)
from persona_assets.inputs.eval_set import EvalSet, Persona
from resources.llm import CpuLLM

QUESTIONS = ["What is the sea made of?", "Why do cats purr?"]
PIRATE = "You are a pirate captain."
PIRATE_REWORDED = "You captain a pirate ship."
EVALS = EvalSet(
    [
        Persona("pirate", PIRATE, (PIRATE_REWORDED, PIRATE)),  # the second: the prompt itself
        Persona("librarian", "You are a quiet librarian.", ()),
        Persona("chemist", "You are a chemist.", ("You work as a chemist.",)),
    ],
    [q.strip() for q in QUESTIONS],
)


@pytest.fixture(scope="module")
def llm(tiny_model_dir):
    return CpuLLM(model=str(tiny_model_dir))


def _generations(llm) -> dict:
    """Responses of fixed token ids (teacher forcing takes any ids), one per persona × question."""
    ids = llm.tokenizer("Salt water and fish, mostly.", add_special_tokens=False)["input_ids"]
    responses = [
        {
            "persona": p.name,
            "question_index": q,
            "token_ids": ids[: 4 + q + k],
            "n_tokens": 4 + q + k,
            "hit_max_new_tokens": False,
            "cache_key": f"{p.name}-{q}",
        }
        for k, p in enumerate(EVALS.personas)
        for q in range(len(QUESTIONS))
    ]
    return {"persona_names": EVALS.persona_names, "responses": responses}


def test_eval_set_keeps_paraphrases_through_its_dict():
    assert EvalSet.from_dict(EVALS.to_dict()) == EVALS
    assert (
        EvalSet.from_dict({"personas": [{"name": "a", "prompt": "A"}], "questions": ["Q?"]}).personas[0].paraphrases
        == ()
    )


def test_paraphrases_used_takes_the_first_n_and_leaves_out_personas_without():
    assert paraphrases_used(EVALS, 1) == {"pirate": [PIRATE_REWORDED], "chemist": ["You work as a chemist."]}
    assert paraphrases_used(EVALS, 0) == {}


def test_identical_paraphrase_gives_zero_and_a_real_one_the_direct_teacher_forcing(llm, tmp_path):
    eval_set, generations = EVALS.to_dict(), _generations(llm)
    jobs = paraphrase_jobs(llm, eval_set, generations, max_paraphrases=8)
    # Only the personas with paraphrases; pirate's second paraphrase is its own prompt: the same scorer.
    assert [(EVALS.persona_names[j.generator], j.question_index) for j in jobs] == [
        ("pirate", 0),
        ("pirate", 1),
        ("chemist", 0),
        ("chemist", 1),
    ]
    assert jobs[0].pairs == [(0, 3), (0, 0)]
    cache = DivergenceCache(tmp_path / "baseline")
    stats = score_missing(llm, jobs, cache, max_scorers_per_pass=12, responses_per_batch=3)
    assert stats.responses_computed == len(jobs)
    rows = paraphrase_rows(generations["responses"], jobs, cached_rows(jobs, cache), EVALS.persona_names)
    same = rows[rows["same_prompt_ids"]]
    assert len(same) == 2 and (same["js"] == 0.0).all()
    assert (same["kl_prompt_paraphrase"] == 0.0).all() and (same["kl_paraphrase_prompt"] == 0.0).all()
    reworded = rows[~rows["same_prompt_ids"]]
    assert (reworded["js"] > 1e-4).all() and (reworded["js"] < torch.log(torch.tensor(2.0)).item()).all()
    # Cross-check: the same response teacher-forced directly, each prompt's whole sequence alone, float64 divergences.
    for job in jobs:
        persona = EVALS.personas[job.generator]
        question = QUESTIONS[job.question_index]
        prompts = [llm.chat_prompt_ids(text, question) for text in (persona.prompt, persona.paraphrases[0])]
        logp = torch.stack([llm.engine.full_forward_logprobs(p, job.response_ids) for p in prompts])
        direct = pair_divergences(logp, [(0, 1)]).js.mean().item()
        row = reworded[(reworded["persona"] == persona.name) & (reworded["question_index"] == job.question_index)]
        assert row["js"].item() == pytest.approx(direct, rel=1e-5), (row["js"].item(), direct)
    # Resumption: a second pass finds every response complete and scores nothing.
    again = score_missing(llm, jobs, cache, max_scorers_per_pass=12, responses_per_batch=3)
    assert again.responses_computed == 0 and again.responses_complete_in_cache == len(jobs)


def test_within_persona_per_question_is_the_mean_over_paraphrases():
    rows = pd.DataFrame(
        {
            "persona": ["a", "a", "a", "a", "b"],
            "question_index": [0, 0, 1, 1, 0],
            "paraphrase": [1, 2, 1, 2, 1],
            "js": [0.1, 0.3, 0.0, 0.4, 0.05],
        }
    )
    table = within_persona_per_question(rows)
    assert table.to_dict("records") == [
        {"persona": "a", "question_index": 0, "js": pytest.approx(0.2)},
        {"persona": "a", "question_index": 1, "js": pytest.approx(0.2)},
        {"persona": "b", "question_index": 0, "js": pytest.approx(0.05)},
    ]
    assert within_persona_per_question(rows.iloc[:0]).empty
