"""The `original_template` rule scores the ids the earlier study scored, with the embedded model's real
tokenizer and chat template (SmolLM2's ChatML): known answers for responses whose ids do and do not
survive decoding and re-tokenisation, and the count of those that do not."""

from __future__ import annotations

import pytest

from persona_assets.measure.method_record import method_record
from persona_assets.measure.response_jobs import not_round_tripping, response_jobs
from persona_assets.measure.scoring_rule import ORIGINAL_TEMPLATE, scored_response
from resources.llm import CpuLLM

PERSONAS = [
    {"name": "pirate_captain", "prompt": "You are a pirate captain."},
    {"name": "librarian", "prompt": "You are a quiet librarian who loves old maps."},
    {"name": "chemist", "prompt": "You are a chemist."},
]
QUESTION = "What is the sea made of?"


@pytest.fixture(scope="module")
def llm(embedded_tokenizer_dir):
    return CpuLLM(model=str(embedded_tokenizer_dir))  # the tokenizer only: no weights load


def ids(llm, *tokens: str) -> list[int]:
    found = llm.tokenizer.convert_tokens_to_ids(list(tokens))
    assert llm.tokenizer.unk_token_id not in found and None not in found, tokens
    return found


def jobs_for(llm, responses: list[tuple[str, list[str], bool]], averaging: str = "pair_own"):
    """responses: (persona, generated tokens, hit_max_new_tokens), all to the one question."""
    eval_set = {"personas": PERSONAS, "questions": [QUESTION]}
    records = [
        {
            "persona": persona,
            "question_index": 0,
            "token_ids": ids(llm, *tokens),
            "hit_max_new_tokens": hit,
            "cache_key": f"k{k}",
        }
        for k, (persona, tokens, hit) in enumerate(responses)
    ]
    generations = {"persona_names": [p["name"] for p in PERSONAS], "responses": records}
    return records, response_jobs(llm, eval_set, generations, averaging, ORIGINAL_TEMPLATE)


def test_period_and_two_newlines_are_scored_as_the_original_re_tokenised_them(llm) -> None:
    responses, jobs = jobs_for(
        llm,
        [
            ("pirate_captain", ["Ah", "oy", ".", "Ċ", "Ċ", "<|im_end|>"], False),  # '.' 'Ċ' 'Ċ' → '.' 'ĊĊ'
            ("librarian", ["Ah", "oy", ".", "<|im_end|>"], False),  # round-trips
            ("chemist", ["Ah", "oy", ".", "Ċ"], True),  # cut at max_new_tokens, round-trips
        ],
    )
    tokenizer = llm.tokenizer
    assert tokenizer.convert_ids_to_tokens(jobs[0].response_ids) == ["Ah", "oy", ".", "ĊĊ", "<|im_end|>", "Ċ"]
    assert tokenizer.convert_ids_to_tokens(jobs[1].response_ids) == ["Ah", "oy", ".", "<|im_end|>", "Ċ"]
    assert tokenizer.convert_ids_to_tokens(jobs[2].response_ids) == ["Ah", "oy", ".", "Ċ", "<|im_end|>", "Ċ"]
    assert [job.round_trips for job in jobs] == [False, True, True]
    # Every scorer's context is its own prompt here: nothing merged across the prompt's end.
    for job in jobs:
        assert job.prompts == {s: llm.chat_prompt_ids(PERSONAS[s]["prompt"], QUESTION) for s in job.prompts}

    changed = not_round_tripping(responses, jobs)
    assert changed == [{"persona": "pirate_captain", "question_index": 0, "generated_tokens": 6, "scored_positions": 6}]
    record = method_record(
        "cpu",
        "float32",
        resource="CpuLLM",
        averaging="pair_own",
        max_scorers_per_pass=8,
        divergence_code_version="3",
        scoring_rule=ORIGINAL_TEMPLATE,
        not_round_tripping=changed,
    )
    assert record["responses_not_round_tripping"] == 1 and record["not_round_tripping"] == changed


def test_a_round_tripping_response_gets_the_same_ids_from_the_id_rule_and_the_same_generated_positions(llm) -> None:
    """Cross-check of two implementations: re-tokenising the text vs appending the closing ids to the
    generated ids; and the `generated` rule's positions are the first positions the original scores."""
    responses, jobs = jobs_for(
        llm,
        [
            ("librarian", ["The", "Ġsea", "Ġis", "Ġsalt", "Ġwater", ".", "<|im_end|>"], False),
            ("chemist", ["Water", ",", "Ġsalt", "Ġand", "Ġlife"], True),
            # Decoded as vLLM's output text is, without clean-up of tokenization spaces: "Ahoy ." keeps its 'Ġ.'.
            ("pirate_captain", ["Ah", "oy", "Ġ.", "<|im_end|>"], False),
        ],
        averaging="all_responses",
    )
    closing = llm.template_closing_ids(PERSONAS[0]["prompt"], QUESTION)
    for response, job in zip(responses, jobs):
        assert job.round_trips is True
        by_id = scored_response(
            response["token_ids"],
            hit_max_new_tokens=response["hit_max_new_tokens"],
            closing_ids=closing,
            rule=ORIGINAL_TEMPLATE,
        )
        assert job.response_ids == by_id.ids
        generated = scored_response(
            response["token_ids"], hit_max_new_tokens=response["hit_max_new_tokens"], closing_ids=closing
        ).ids
        kept = generated[:-1] if generated[-1] == closing[0] else generated
        assert job.response_ids[: len(generated)] == generated and job.response_ids[len(kept) :] == closing
    assert not_round_tripping(responses, jobs) == []


def test_a_merge_across_the_prompts_end_moves_the_context_as_in_the_original(llm) -> None:
    """A response starting with 'ĊĊ': the rendered 'assistant\\n' + '\\n\\n…' tokenises as 'ĊĊ' 'Ċ', so the
    original's context (split at the prompt's length) ends in 'ĊĊ' and its scored ids start one later."""
    responses, jobs = jobs_for(llm, [("librarian", ["ĊĊ", "Ah", "oy", "<|im_end|>"], False)])
    job = jobs[0]
    assert llm.tokenizer.convert_ids_to_tokens(job.response_ids) == ["Ċ", "Ah", "oy", "<|im_end|>", "Ċ"]
    for s, context in job.prompts.items():
        prompt = llm.chat_prompt_ids(PERSONAS[s]["prompt"], QUESTION)
        assert context[:-1] == prompt[:-1] and llm.tokenizer.convert_ids_to_tokens(context[-2:]) == ["istant", "ĊĊ"]
    assert job.round_trips is False and len(not_round_tripping(responses, jobs)) == 1


def test_a_response_whose_ids_differ_between_system_prompts_is_refused_naming_it(embedded_tokenizer_dir) -> None:
    """A template that writes part of the system prompt right after the assistant's text (no special token
    between them): the scored ids then depend on the scorer, which the original refused; so does this run."""
    from transformers import AutoTokenizer

    from persona_assets.runs.errors import InputError
    from persona_assets.inputs.eval_set import EvalSet
    from persona_assets.measure.response_jobs import original_template_scoring
    from resources.hf_engine import chat_prompt_ids, original_template_rendering

    tokenizer = AutoTokenizer.from_pretrained(embedded_tokenizer_dir)
    tokenizer.chat_template = (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] }}"
        "{% if m['role'] == 'assistant' %}{{ messages[0]['content'][-5:] }}{% endif %}{{ '<|im_end|>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )

    class Rendering:  # the real rendering function on the real tokenizer with this template
        def original_template_rendering(self, system, user, response_ids):
            return original_template_rendering(tokenizer, system, user, response_ids)

    evals = EvalSet.from_dict({"personas": PERSONAS, "questions": [QUESTION]})
    prompts = {(s, 0): chat_prompt_ids(tokenizer, p["prompt"], QUESTION) for s, p in enumerate(PERSONAS)}
    response = {
        "persona": "librarian",
        "question_index": 0,
        "hit_max_new_tokens": True,
        "token_ids": tokenizer.convert_tokens_to_ids(["Ah", "oy"]),
    }
    with pytest.raises(
        InputError,
        match="'librarian' to question 0: re-rendered under the system prompt of 'librarian'.*that of 'pirate_captain'",
    ):
        original_template_scoring(Rendering(), evals, response, [0, 1, 2], prompts, [0])
