import time

import dagster as dg
import numpy as np
import pandas as pd

from persona_assets.config import DivergenceConfig
from persona_assets.core.aggregate import AVERAGING_MODES, pair_matrices, pair_question_table
from persona_assets.core.eval_set import EvalSet
from persona_assets.core.progress import ProgressReporter
from persona_assets.storage import outputs_dir, write_csv
from resources.llm import LLMResource


def scorer_pairs(generator: int, n_personas: int, averaging: str) -> list[tuple[int, int]]:
    """Which persona pairs a response needs: (generator, other) for pair-own, all pairs otherwise."""
    if averaging == "pair_own":
        return [(generator, other) for other in range(n_personas) if other != generator]
    return [(a, b) for a in range(n_personas) for b in range(a + 1, n_personas)]


@dg.asset(group_name="model", kinds={"torch"}, code_version="1", op_tags={"device": "gpu"})
def divergence_matrices(
    context: dg.AssetExecutionContext,
    config: DivergenceConfig,
    llm: LLMResource,
    eval_set: dict,
    generations: dict,
) -> dict:
    """Teacher-forced Jensen-Shannon and KL divergences between every pair of personas.

    Each response is scored under every persona's system prompt in one batch; per token JS and
    both KLs (float32 log-softmax, divergence math in float64), averaged over the response's
    tokens, then over responses and questions as the `averaging` setting says. Matrices: JS
    (symmetric), KL[i][j] = KL(P_i‖P_j), KL_sym, |KL − KLᵀ| and the signed KL − KLᵀ, in nats.
    The per-(pair, question, response) table is written to outputs/divergence_per_response.csv.
    """
    if config.averaging not in AVERAGING_MODES:
        raise dg.Failure(f"averaging must be one of {AVERAGING_MODES}, got {config.averaging!r}")
    evals = EvalSet.from_dict(eval_set)
    names = evals.persona_names
    if generations["persona_names"] != names:
        raise dg.Failure("generations were made for other personas than the eval set: re-materialize generations")
    prompts = {(p.name, q): llm.chat_prompt_ids(p.prompt, question) for p in evals.personas for q, question in enumerate(evals.questions)}

    rows = []
    progress = ProgressReporter("teacher forcing", context.log.info, unit="responses")
    started = time.monotonic()
    scored_tokens = 0
    responses = generations["responses"]
    response_pairs = [scorer_pairs(names.index(r["persona"]), len(names), config.averaging) for r in responses]
    items = [
        ([prompts[(name, r["question_index"])] for name in names], r["token_ids"], pairs)
        for r, pairs in zip(responses, response_pairs)
    ]
    results = llm.batch_response_divergences(items, pair_chunk_size=config.pair_chunk_size, progress=progress)
    for response, pairs, result in zip(responses, response_pairs, results):
        q = response["question_index"]
        js, kl_ab, kl_ba = (t.mean(dim=1).tolist() for t in (result.js, result.kl_ab, result.kl_ba))
        for k, (a, b) in enumerate(pairs):
            rows.append(
                {
                    "generator": response["persona"],
                    "question_index": q,
                    "persona_a": names[a],
                    "persona_b": names[b],
                    "js": js[k],
                    "kl_ab": kl_ab[k],
                    "kl_ba": kl_ba[k],
                    "n_tokens": response["n_tokens"],
                }
            )
        scored_tokens += response["n_tokens"] * len(names)
    elapsed = time.monotonic() - started

    per_response = pd.DataFrame(rows)
    matrices = pair_matrices(per_response, names, config.averaging)
    table = pair_question_table(per_response, names, config.averaging)
    write_csv(outputs_dir() / "divergence_per_response.csv", per_response)
    write_csv(outputs_dir() / "divergence_per_pair_question.csv", table)

    upper = matrices.js[np.triu_indices(len(names), k=1)]
    context.add_output_metadata(
        {
            "averaging": config.averaging,
            "js_mean": float(upper.mean()),
            "js_min": float(upper.min()),
            "js_max": float(upper.max()),
            "teacher_forced_tokens": scored_tokens,
            "tokens_per_second": scored_tokens / elapsed if elapsed > 0 else None,
            "seconds": elapsed,
        }
    )
    return {
        "model": llm.describe(),
        "method": {
            "averaging": config.averaging,
            "log_softmax_dtype": "float32",
            "divergence_dtype": "float64",
            "units": "nats",
            "token_mean": "mean over response positions (end-of-turn token included when emitted)",
            "kl_matrix": "[i][j] = KL(P_i || P_j)",
            "kl_signed_asym_matrix": "[i][j] = KL(i->j) - KL(j->i)",
        },
        "generation_settings": generations["settings"],
        "n_questions": len(evals.questions),
        **matrices.to_dict(),
        "per_pair_question": table.to_dict(orient="records"),
        "response_token_counts": [
            {"persona": r["persona"], "question_index": r["question_index"], "n_tokens": r["n_tokens"]} for r in responses
        ],
        "per_response_csv": str(outputs_dir() / "divergence_per_response.csv"),
    }
