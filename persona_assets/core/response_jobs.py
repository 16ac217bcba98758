"""Which teacher forcing each response needs: its cache key, its scorers' prompts and its pairs."""

from __future__ import annotations

from typing import Any

from persona_assets.core.aggregate import AVERAGING_MODES
from persona_assets.core.divergence_store import ResponseJob, response_key
from persona_assets.core.errors import InputError
from persona_assets.core.eval_set import EvalSet
from persona_assets.core.scoring_rule import GENERATED, scored_response


def scorer_pairs(generator: int, n_personas: int, averaging: str) -> list[tuple[int, int]]:
    """Which persona pairs a response needs: (generator, other) for pair-own, all pairs otherwise."""
    if averaging == "pair_own":
        return [(generator, other) for other in range(n_personas) if other != generator]
    return [(a, b) for a in range(n_personas) for b in range(a + 1, n_personas)]


def response_jobs(
    llm: Any, eval_set: dict, generations: dict, averaging: str, scoring_rule: str = GENERATED
) -> list[ResponseJob]:
    """One job per response. `llm` needs `describe()` and `chat_prompt_ids()` (no weights are loaded).

    With the `original_template` scoring rule the template's closing ids (`llm.template_closing_ids`)
    are appended where the rule says; the scored ids are part of the cache key.
    """
    if averaging not in AVERAGING_MODES:
        raise InputError(f"averaging must be one of {AVERAGING_MODES}, got {averaging!r}")
    evals = EvalSet.from_dict(eval_set)
    names = evals.persona_names
    if generations["persona_names"] != names:
        raise InputError("generations were made for other personas than the eval set: re-materialize generations")
    model = llm.describe()
    prompts = {
        (k, q): llm.chat_prompt_ids(p.prompt, question)
        for k, p in enumerate(evals.personas)
        for q, question in enumerate(evals.questions)
    }
    closing = (
        llm.template_closing_ids(evals.personas[0].prompt, evals.questions[0]) if scoring_rule != GENERATED else []
    )
    jobs = []
    for r in generations["responses"]:
        g, q = names.index(r["persona"]), r["question_index"]
        ids = list(r["token_ids"])
        if scoring_rule != GENERATED:
            ids = scored_response(ids, hit_max_new_tokens=r["hit_max_new_tokens"], closing_ids=closing, rule=scoring_rule).ids
        key = response_key(
            model_fingerprint=model["model_fingerprint"],
            dtype=model["scoring_dtype"],  # the precision the values are computed in
            device_kind=model["device"].split(":")[0],
            generation_key=r.get("cache_key", ""),
            response_ids=ids,
            generator_prompt_ids=prompts[(g, q)],
        )
        pairs = scorer_pairs(g, len(names), averaging)
        used = sorted({s for pair in pairs for s in pair})
        jobs.append(
            ResponseJob(
                key, ids, {s: prompts[(s, q)] for s in used}, pairs,
                names={s: names[s] for s in {g, *used}}, generator=g, question_index=q,
            )
        )
    return jobs
