"""The per-response records and the cosine stage, the functions the assets and the benchmarks share."""

import numpy as np
import pandas as pd

from persona_assets.inputs.eval_set import EvalSet, Persona
from persona_assets.measure.aggregate import per_response_table
from persona_assets.measure.cosine import centred_cosine, cosine_by_layer, persona_prompts
from persona_assets.measure.responses import generate_into_cache, missing_items, pair_value_rows, response_records
from persona_assets.measure.scoring_plan import ResponseJob
from persona_assets.runs.generation_cache import GenerationCache, generation_items
from resources.llm import CpuLLM

EVALS = EvalSet([Persona("pirate", "You are a pirate."), Persona("judge", "You are a judge.")], ["Hi?", "Why?", "How?"])


def test_cosine_by_layer_averages_each_persona_over_its_questions_then_centres():
    rng = np.random.default_rng(0)
    n_p, n_q, layers, hidden = 3, 4, [2, 5], 6
    states = rng.normal(size=(n_p * n_q, len(layers), hidden))
    matrices = cosine_by_layer(states, n_p, n_q, layers)
    assert list(matrices) == ["layer2", "layer5"]
    for k, name in enumerate(matrices):
        # by hand: persona p's prompts are rows p*n_q .. p*n_q + n_q - 1 (persona_prompts order)
        centroids = np.stack([states[p * n_q : (p + 1) * n_q, k, :].mean(axis=0) for p in range(n_p)])
        np.testing.assert_allclose(matrices[name], centred_cosine(centroids), rtol=0, atol=1e-12)


def test_pair_value_rows_are_the_rows_of_the_per_response_table():
    responses = [
        {"persona": "pirate", "question_index": 0, "n_tokens": 5},
        {"persona": "judge", "question_index": 1, "n_tokens": 7},
    ]
    # The second job scores three positions where the response generated 7 tokens (original_template).
    jobs = [
        ResponseJob("k0", [1], {0: [1], 1: [2]}, [(0, 1)]),
        ResponseJob("k1", [2, 3, 4], {0: [1], 1: [2]}, [(1, 0)]),
    ]
    values = [[{"js": 0.1, "kl_ab": 0.2, "kl_ba": 0.3}], [{"js": 0.4, "kl_ab": 0.5, "kl_ba": 0.6}]]
    rows = pair_value_rows(responses, jobs, values, ["pirate", "judge"])
    assert rows[1] == {
        "generator": "judge",
        "question_index": 1,
        "persona_a": "judge",
        "persona_b": "pirate",
        "js": 0.4,
        "kl_ab": 0.5,
        "kl_ba": 0.6,
        "n_tokens": 7,
        "n_scored_positions": 3,
    }
    pd.testing.assert_frame_equal(per_response_table(responses, jobs, values, ["pirate", "judge"]), pd.DataFrame(rows))


def test_generation_fills_only_what_the_cache_lacks_and_records_read_it_back(tiny_model_dir, tmp_path):
    llm = CpuLLM(model=str(tiny_model_dir))
    cache = GenerationCache(tmp_path / "generations")
    items = generation_items(llm, EVALS, 4)
    assert [i["prompt_ids"] for i in items] == persona_prompts(llm, EVALS)  # the cosine stage's prompts, same order
    generate_into_cache(llm, missing_items(items[:2], cache), cache, max_new_tokens=4, batch_size=2)
    assert len(missing_items(items, cache)) == len(items) - 2
    first = cache.get(items[0]["key"])
    generate_into_cache(llm, missing_items(items, cache), cache, max_new_tokens=4, batch_size=3)
    assert missing_items(items, cache) == [] and cache.get(items[0]["key"]) == first  # nothing generated twice
    records = response_records(items, cache, llm.decode)
    expected_order = [(p.name, q) for p in EVALS.personas for q in range(3)]
    assert [(r["persona"], r["question_index"]) for r in records] == expected_order
    for record, item in zip(records, items):
        entry = cache.get(item["key"])
        assert record["token_ids"] == entry["token_ids"] and record["n_tokens"] == len(entry["token_ids"]) <= 4
        assert record["text"] == llm.decode(entry["token_ids"]) and record["cache_key"] == item["key"]
