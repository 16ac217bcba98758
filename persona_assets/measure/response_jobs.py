"""Which teacher forcing each response needs: its cache key, its scorers' prompts and its pairs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from persona_assets.measure.aggregate import AVERAGING_MODES
from persona_assets.measure.divergence_store import ResponseJob, response_key
from persona_assets.runs.errors import InputError
from persona_assets.inputs.eval_set import EvalSet
from persona_assets.measure.scoring_rule import GENERATED, original_template_split, round_trips


def scorer_pairs(generator: int, n_personas: int, averaging: str) -> list[tuple[int, int]]:
    """Which persona pairs a response needs: (generator, other) for pair-own, all pairs otherwise."""
    if averaging == "pair_own":
        return [(generator, other) for other in range(n_personas) if other != generator]
    return [(a, b) for a in range(n_personas) for b in range(a + 1, n_personas)]


def original_template_scoring(
    llm: Any,
    evals: EvalSet,
    response: Mapping[str, Any],
    scorers: Sequence[int],
    prompts: Mapping[tuple[int, int], list[int]],
    closing: Sequence[int],
) -> tuple[list[int], dict[int, list[int]], bool]:
    """What the earlier study teacher-forced for one response: (scored ids, each scorer's context, round-trips).

    The response is decoded and re-rendered under each scorer's system prompt, as that study did;
    like it, a response whose scored ids differ between system prompts is refused.
    """
    g, q = evals.persona_names.index(response["persona"]), response["question_index"]
    scored: list[int] | None = None
    contexts: dict[int, list[int]] = {}
    for s in scorers:
        rendered = llm.original_template_rendering(evals.personas[s].prompt, evals.questions[q], response["token_ids"])
        context, ids = original_template_split(rendered, prompts[(s, q)])
        if scored is not None and ids != scored:
            raise InputError(
                f"the response of {evals.persona_names[g]!r} to question {q}: re-rendered under the system prompt "
                f"of {evals.persona_names[s]!r} it gives other ids than under that of "
                f"{evals.persona_names[scorers[0]]!r}; the original scoring refused such a response"
            )
        scored, contexts[s] = ids, context
    if scored is None:
        raise InputError(f"the response of {evals.persona_names[g]!r} to question {q} has no scorer")
    same = all(
        round_trips(
            response["token_ids"],
            hit_max_new_tokens=response["hit_max_new_tokens"],
            closing_ids=closing,
            context_ids=contexts[s],
            prompt_ids=prompts[(s, q)],
            scored_ids=scored,
        )
        for s in scorers
    )
    return scored, contexts, same


def scoring_key(
    model: Mapping[str, Any], response: Mapping[str, Any], ids: Sequence[int], generator_prompt_ids: Sequence[int]
) -> str:
    """The cache key of one response scored on `ids` after its generator's prompt, by this model (`llm.describe()`)."""
    return response_key(
        model_fingerprint=model["model_fingerprint"],
        dtype=model["scoring_dtype"],  # the precision the values are computed in
        device_kind=model["device"].split(":")[0],
        generation_key=response.get("cache_key", ""),
        response_ids=ids,
        generator_prompt_ids=generator_prompt_ids,
    )


def response_jobs(
    llm: Any, eval_set: dict, generations: dict, averaging: str, scoring_rule: str = GENERATED
) -> list[ResponseJob]:
    """One job per response. `llm` needs `describe()` and `chat_prompt_ids()` (no weights are loaded).

    With the `original_template` scoring rule the job scores the ids the earlier study scored
    (`original_template_scoring`; `llm.original_template_rendering` and `llm.template_closing_ids`
    needed), each scorer in that study's context, and says whether the response round-trips; the
    scored ids are part of the cache key, the contexts part of the pair keys.
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
        pairs = scorer_pairs(g, len(names), averaging)
        used = sorted({s for pair in pairs for s in pair})
        ids, scorer_prompts, same = list(r["token_ids"]), {s: prompts[(s, q)] for s in used}, None
        if scoring_rule != GENERATED:
            ids, scorer_prompts, same = original_template_scoring(llm, evals, r, used, prompts, closing)
        key = scoring_key(model, r, ids, prompts[(g, q)])
        jobs.append(
            ResponseJob(
                key,
                ids,
                scorer_prompts,
                pairs,
                names={s: names[s] for s in {g, *used}},
                generator=g,
                question_index=q,
                round_trips=same,
            )
        )
    return jobs


def not_round_tripping(responses: Sequence[Mapping[str, Any]], jobs: Sequence[ResponseJob]) -> list[dict[str, Any]]:
    """The responses whose re-tokenised ids are not their generated ids (original_template rule only)."""
    return [
        {
            "persona": r["persona"],
            "question_index": r["question_index"],
            "generated_tokens": len(r["token_ids"]),
            "scored_positions": len(job.response_ids),
        }
        for r, job in zip(responses, jobs)
        if job.round_trips is False
    ]
