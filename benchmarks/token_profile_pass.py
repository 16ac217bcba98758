"""Benchmark: the per-token pass (logit lens + position profile + vocabulary terms) against the teacher forcing.

The same responses and jobs as a run of `--config` (eval_set and generations materialized once into
`--work-dir` through the real assets and resources, `persona_assets.environment.resources()`: set
PERSONA_RESOURCES / PERSONA_MODEL for the GPU), then in one process, with empty caches each round:
1. the divergence step's scoring (`score_missing`, what score_divergence_shard runs), timed;
2. the per-token pass (`score_missing_profiles`, what the token_profiles asset runs), timed,
at the lens layers the run would use (the cosine layers of `--config`, or the model's default four,
and the last layer). Prints both, the ratio, and the hardware line.

    .venv/bin/python benchmarks/token_profile_pass.py --work-dir /tmp/lens --config configs/demo.yaml
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import hardware  # noqa: E402
from benchmarks.cpu_divergence_step import ensure_generations  # noqa: E402
from benchmarks.cpu_shared_prefixes import cpu_seconds, load_average, log  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", required=True, help="holds the generations between calls")
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--n-questions", type=int, default=0, help="the pass on the first n questions only (0 = all)")
    args = parser.parse_args()
    work = Path(args.work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    import os

    os.environ["PERSONA_DATA_DIR"] = str(work / "data")
    os.environ.setdefault("PERSONA_FIGURES_DIR", str(work / "figures"))
    ensure_generations(args, work)

    import yaml

    from persona_assets import environment
    from persona_assets.config import DivergenceConfig, ProfileConfig
    from persona_assets.measure.cosine import default_layers
    from persona_assets.measure.divergence_store import DivergenceCache, score_missing
    from persona_assets.measure.profile_store import ProfileCache, score_missing_profiles
    from persona_assets.measure.response_jobs import response_jobs
    from persona_assets.runs.storage import read_json

    ops = yaml.safe_load((REPO / args.config).read_text())["ops"]
    divergence = DivergenceConfig(**(ops.get("divergence_matrices", {}).get("config") or {}))
    profile = ProfileConfig(**(ops.get("token_profiles", {}).get("config") or {}))
    llm = environment.resources()["llm"]
    outputs = work / "data" / "outputs"
    eval_set, generations = read_json(outputs / "eval_set.json"), read_json(outputs / "generations.json")
    jobs = response_jobs(llm, eval_set, generations, divergence.averaging, divergence.scoring_rule)
    n_questions = args.n_questions or profile.n_questions
    lens_jobs = [j for j in jobs if not n_questions or j.question_index < n_questions]
    num_layers = llm.num_layers()
    cosine = (ops.get("persona_cosine", {}).get("config") or {}).get("layers") or default_layers(num_layers)
    layers = sorted({*cosine, num_layers})
    llm.load_for_teacher_forcing()
    log(hardware.cpu_model() if not llm.describe()["device"].startswith("cuda") else hardware.gpu_names())
    log(f"model {llm.describe()['model_name']} ({llm.describe()['scoring_dtype']}, {llm.describe()['device']})")
    log(f"{len(jobs)} responses, {len(lens_jobs)} in the pass; lens layers {layers}; load average {load_average()}")
    for round_ in range(args.rounds):
        scratch = Path(tempfile.mkdtemp(dir=work))
        try:
            cpu, started = cpu_seconds(), time.perf_counter()
            stats = score_missing(
                llm,
                jobs,
                DivergenceCache(scratch / "divergences"),
                max_scorers_per_pass=divergence.max_scorers_per_pass,
                responses_per_batch=divergence.responses_per_batch,
                pair_chunk_size=divergence.pair_chunk_size,
            )
            tf = time.perf_counter() - started
            tf_cpu = cpu_seconds() - cpu
            log(f"round {round_ + 1}: teacher forcing {tf:.1f} s ({tf_cpu:.0f} CPU s); load average {load_average()}")
            cpu, started = cpu_seconds(), time.perf_counter()
            score_missing_profiles(
                llm,
                lens_jobs,
                ProfileCache(scratch / "token_profiles"),
                layers,
                top_k_stored=profile.top_k_stored,
                max_scorers_per_pass=profile.max_scorers_per_pass,
                responses_per_batch=profile.responses_per_batch,
            )
            lens = time.perf_counter() - started
            lens_cpu = cpu_seconds() - cpu
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        log(
            f"round {round_ + 1}: teacher forcing {tf:.1f} s ({tf_cpu:.0f} CPU s, "
            f"{stats.teacher_forced_tokens} tokens); "
            f"per-token pass {lens:.1f} s ({lens_cpu:.0f} CPU s) = {100 * lens / tf:.0f} % of the teacher forcing; "
            f"load average {load_average()}"
        )


if __name__ == "__main__":
    main()
