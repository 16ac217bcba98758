"""The within-persona yardstick's teacher forcing: each persona's responses under its own prompt and
under each of its paraphrases (the same persona in other words).

A response generated under persona A's prompt is teacher-forced under that prompt and under A's
paraphrase j; the per-token JS / KL between the two distributions, averaged over the response's
tokens, is the response's value for paraphrase j. The jobs are `ResponseJob`s scored by
`divergence_store.score_missing` into a `DivergenceCache` of their own, so caching, resumption,
out-of-memory halving and the NaN guards are those of the divergences. Scorer indices: the
generator's own prompt is the persona's index g, paraphrase j is `n_personas + j`; a paraphrase
whose prompt ids equal the prompt's is the same scorer g, so its pair (g, g) gives 0 exactly.

Aggregated like the output JS: per response the mean over its tokens; per (persona, question) the
mean over the persona's paraphrases (as the pair JS averages its two directions); per persona the
mean over questions. No dagster import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from persona_assets.inputs.eval_set import EvalSet
from persona_assets.measure.response_jobs import scoring_key
from persona_assets.measure.scoring_plan import ResponseJob
from persona_assets.runs.errors import InputError

ROW_COLUMNS = (
    "persona",
    "question_index",
    "paraphrase",
    "js",
    "kl_prompt_paraphrase",
    "kl_paraphrase_prompt",
    "n_tokens",
    "same_prompt_ids",
)


def paraphrases_used(evals: EvalSet, max_paraphrases: int) -> dict[str, list[str]]:
    """Each persona's paraphrases this run scores (the first `max_paraphrases`); personas without any left out."""
    return {p.name: list(p.paraphrases[:max_paraphrases]) for p in evals.personas if p.paraphrases[:max_paraphrases]}


def paraphrase_jobs(llm: Any, eval_set: dict, generations: dict, max_paraphrases: int) -> list[ResponseJob]:
    """One job per response of a persona with paraphrases: its pairs (g, paraphrase scorer), in paraphrase order.

    `llm` needs `describe()` and `chat_prompt_ids()` (no weights are loaded). The response is scored on
    its generated ids (the `generated` scoring rule).
    """
    evals = EvalSet.from_dict(eval_set)
    names = evals.persona_names
    if generations["persona_names"] != names:
        raise InputError("generations were made for other personas than the eval set: re-materialize generations")
    used = paraphrases_used(evals, max_paraphrases)
    model = llm.describe()
    n = len(names)
    jobs = []
    for r in generations["responses"]:
        persona = r["persona"]
        if persona not in used:
            continue
        g, q = names.index(persona), r["question_index"]
        question = evals.questions[q]
        own = llm.chat_prompt_ids(evals.personas[g].prompt, question)
        prompts: dict[int, list[int]] = {g: own}
        pairs: list[tuple[int, int]] = []
        labels = {g: persona}
        for j, text in enumerate(used[persona]):
            ids = llm.chat_prompt_ids(text, question)
            scorer = g if ids == own else n + j
            prompts.setdefault(scorer, ids)
            labels.setdefault(scorer, f"{persona} (paraphrase {j + 1})")
            pairs.append((g, scorer))
        ids = list(r["token_ids"])
        jobs.append(
            ResponseJob(
                scoring_key(model, r, ids, own),
                ids,
                prompts,
                pairs,
                names=labels,
                generator=g,
                question_index=q,
            )
        )
    return jobs


def paraphrase_rows(
    responses: Sequence[Mapping[str, Any]],
    jobs: Sequence[ResponseJob],
    values: Sequence[Sequence[Mapping[str, float]]],
    persona_names: Sequence[str],
) -> pd.DataFrame:
    """One row per (response, paraphrase): `ROW_COLUMNS`, from each job's pairs and their cached values.

    `responses` are the generations' records; only those with a job (a persona with paraphrases) are used.
    """
    by_slot = {(r["persona"], r["question_index"]): r for r in responses}
    rows = []
    for job, found in zip(jobs, values):
        persona = persona_names[job.generator]
        response = by_slot[(persona, job.question_index)]
        for j, ((_, scorer), value) in enumerate(zip(job.pairs, found)):
            rows.append(
                {
                    "persona": persona,
                    "question_index": int(job.question_index),
                    "paraphrase": j + 1,
                    "js": float(value["js"]),
                    "kl_prompt_paraphrase": float(value["kl_ab"]),
                    "kl_paraphrase_prompt": float(value["kl_ba"]),
                    "n_tokens": int(response["n_tokens"]),
                    "same_prompt_ids": scorer == job.generator,
                }
            )
    return pd.DataFrame(rows, columns=list(ROW_COLUMNS))


def within_persona_per_question(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (persona, question_index): `js` = the mean over the persona's paraphrases."""
    if rows.empty:
        return pd.DataFrame(columns=["persona", "question_index", "js"])
    return rows.groupby(["persona", "question_index"], sort=False)["js"].mean().reset_index()
