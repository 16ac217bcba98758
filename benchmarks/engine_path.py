"""The study as plain library calls, without a Dagster run: the engine-only half of user_path.py.

The same work as `dagster asset materialize --select 'not group:legacy' -c CONFIG`: the settings
come from the same run-config file (through the same config classes, so the same defaults), the
model from the same resource class (CpuLLM / GpuLLM, used as a plain object), and every stage calls
what its asset calls: generation with the content cache, last-prompt hidden states and centred
cosine, teacher forcing through `score_missing` plus the noise floor, aggregation into matrices
and tables, the analyses and the figures. No executor, event log or IO manager is involved.

    PYTHONPATH=. python benchmarks/engine_path.py --config configs/ci.yaml --model embedded --resources cpu

Prints one line per stage ("[stage] name seconds") and a JSON summary as its last line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]


def settings(config_path: Path) -> dict:
    """Each asset's config object, built from the run-config file as Dagster would build it."""
    import yaml

    from persona_assets import config as c

    ops = (yaml.safe_load(config_path.read_text()) or {}).get("ops") or {}

    def of(op: str, cls):
        return cls(**((ops.get(op) or {}).get("config") or {}))

    return {
        "eval_set": of("eval_set", c.EvalSetConfig),
        "generations": of("generations", c.GenerationConfig),
        "persona_cosine": of("persona_cosine", c.CosineConfig),
        "divergence_matrices": of("divergence_matrices", c.DivergenceConfig),
        "cosine_precheck": of("cosine_precheck", c.PrecheckConfig),
        "leakage_correlations": of("leakage_correlations", c.AnalysisConfig),
        "kill_gate_verdicts": of("kill_gate_verdicts", c.KillGateConfig),
    }


def generate(llm, evals, config, work: Path) -> dict:
    from persona_assets.measure.responses import generate_into_cache, missing_items, response_records
    from persona_assets.runs.generation_cache import GenerationCache, generation_items

    cache = GenerationCache(work / "cache" / "generations")
    items = generation_items(llm, evals, config.max_new_tokens)
    generate_into_cache(
        llm, missing_items(items, cache), cache, max_new_tokens=config.max_new_tokens, batch_size=config.batch_size
    )
    responses = response_records(items, cache, llm.decode)
    import pandas as pd

    from persona_assets.runs.storage import write_csv

    write_csv(work / "outputs" / "generations.csv", pd.DataFrame(responses).drop(columns=["token_ids"]))
    return {
        "persona_names": evals.persona_names,
        "responses": responses,
        "settings": {"max_new_tokens": config.max_new_tokens, "decoding": "greedy"},
    }


def cosine(llm, evals, config) -> dict:
    from persona_assets.measure.cosine import CENTRING_RUN_MEAN, cosine_by_layer, default_layers, persona_prompts

    layers = list(config.layers) or default_layers(llm.num_layers())
    states = llm.last_prompt_hidden_states(persona_prompts(llm, evals), layers, batch_size=config.batch_size).numpy()
    matrices = cosine_by_layer(states, len(evals.personas), len(evals.questions), layers)
    return {
        "persona_names": evals.persona_names,
        "centring": CENTRING_RUN_MEAN,
        "layers": layers,
        "cosine_matrices": {name: m.tolist() for name, m in matrices.items()},
    }


def divergences(llm, evals, generations, config, work: Path):
    from persona_assets.measure.divergence_store import DivergenceCache, score_missing
    from persona_assets.measure.response_jobs import response_jobs
    from resources.floor_rescoring import measure_noise_floor

    jobs = response_jobs(llm, evals.to_dict(), generations, config.averaging)
    stats = score_missing(
        llm,
        jobs,
        DivergenceCache(work / "cache" / "divergences"),
        max_scorers_per_pass=config.max_scorers_per_pass,
        responses_per_batch=config.responses_per_batch,
        pair_chunk_size=config.pair_chunk_size,
    )
    floor = measure_noise_floor(
        llm,
        jobs,
        [{"generator": r["persona"], "question_index": r["question_index"]} for r in generations["responses"]],
        samples=config.noise_floor_samples,
        max_scorers_per_pass=config.max_scorers_per_pass,
        pair_chunk_size=config.pair_chunk_size,
    )
    floor.pop("seconds", None)
    return jobs, stats, floor


def aggregate(generations, jobs, config, floor, work: Path) -> tuple:
    from persona_assets.measure.aggregate import pair_matrices, pair_question_table, per_response_table
    from persona_assets.measure.divergence_store import DivergenceCache, cached_rows
    from persona_assets.runs.storage import write_csv

    names = generations["persona_names"]
    values = cached_rows(jobs, DivergenceCache(work / "cache" / "divergences"))
    per_response = per_response_table(generations["responses"], jobs, values, names)
    matrices = pair_matrices(per_response, names, config.averaging)
    table = pair_question_table(per_response, names, config.averaging)
    write_csv(work / "outputs" / "divergence_per_response.csv", per_response)
    write_csv(work / "outputs" / "divergence_per_pair_question.csv", table)
    value = {"method": {"averaging": config.averaging}, **matrices.to_dict(), "noise_floor": floor}
    return value, per_response, table


def analyse(divergence_matrices, per_response, table, persona_cosine, configs) -> tuple:
    from persona_assets.analysis import correlation_report as analyses
    from persona_assets.analysis.matrices import inputs_from_run

    leakage = {"available": False, "note": "no leakage_path configured: leakage analyses are skipped", "rows": []}
    inputs = inputs_from_run(divergence_matrices, persona_cosine, leakage, per_response, table)
    pre, corr, gates = configs["cosine_precheck"], configs["leakage_correlations"], configs["kill_gate_verdicts"]
    analyses.cosine_precheck(inputs, n_boot=pre.n_bootstrap, seed=pre.seed)
    correlations, _, _ = analyses.leakage_correlations(inputs, n_boot=corr.n_bootstrap, seed=corr.seed)
    analyses.kill_gate_verdicts(
        inputs,
        correlations,
        min_std=gates.min_js_std,
        min_ratio=gates.min_js_ratio,
        max_abs_rho=gates.max_abs_js_cosine_rho,
        min_relative_question_spread=gates.min_relative_question_spread,
    )
    return inputs, correlations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="the run-config file the Dagster path gets")
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--resources", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--work-dir", default="")
    args = parser.parse_args()
    started = time.perf_counter()

    from persona_assets.inputs.eval_set import build_eval_set
    from resources.gpu_llm import GpuLLM
    from resources.llm import CpuLLM

    configs = settings(Path(args.config))
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="engine-path-"))
    llm = (GpuLLM if args.resources == "gpu" else CpuLLM)(model=args.model)
    from benchmarks.gpu_phase1 import Timer

    stages = Timer(llm.describe()["device"])
    imports_s = time.perf_counter() - started
    e = configs["eval_set"]
    evals = stages.run(
        "eval_set",
        lambda: build_eval_set(
            REPO / e.personas_file, REPO / e.questions_file, persona_subset=list(e.personas), n_questions=e.n_questions
        ),
    )
    stages.run("model load", llm.load_for_teacher_forcing)
    import torch

    with torch.inference_mode():
        gens = stages.run("generations", lambda: generate(llm, evals, configs["generations"], work))
        persona_cosine = stages.run("persona_cosine", lambda: cosine(llm, evals, configs["persona_cosine"]))
        jobs, stats, floor = stages.run(
            "divergences", lambda: divergences(llm, evals, gens, configs["divergence_matrices"], work)
        )
    value, per_response, table = stages.run(
        "aggregation", lambda: aggregate(gens, jobs, configs["divergence_matrices"], floor, work)
    )
    inputs, correlations = stages.run("analysis", lambda: analyse(value, per_response, table, persona_cosine, configs))
    from benchmarks.gpu_phase1 import run_figures  # the figures asset's calls

    stages.run("figures", lambda: run_figures(inputs, correlations, work))
    print(
        json.dumps(
            {
                "stages": stages.stages,
                "imports_and_setup_s": imports_s,
                "device": llm.describe()["device"],
                "teacher_forced_tokens": stats.teacher_forced_tokens,
                "js_matrix": value["js_matrix"],
                "total_s": time.perf_counter() - started,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
