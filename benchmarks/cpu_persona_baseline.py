"""Benchmark: what the within-persona baseline adds to `make job`'s teacher forcing on the CPU.

The shape of configs/demo.yaml on the real embedded model (SmolLM2-135M-Instruct, float32): the
responses of a demo run (`--generations`, its outputs/generations.json) are scored as the run
scores them, in one process, through the functions the assets call: first the divergences
(`response_jobs` + `score_missing`, pair-own), then the baseline with `--paraphrases` per persona
(`paraphrase_jobs` + `score_missing`), each into an empty cache, `--rounds` times in turn so that
a shared machine's load hits both alike. As in a run, the baseline finds the generators' prompts
already computed (the resource's prefix memo) and computes its paraphrases' prompts; each round
uses a new resource, so no round reuses another's prompts. It prints each one's wall and CPU
seconds, teacher-forced tokens, the baseline's share of the divergences' time, and the load.

    .venv/bin/python benchmarks/cpu_persona_baseline.py --generations data/outputs/generations.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from persona_assets.inputs.eval_set import build_eval_set  # noqa: E402
from persona_assets.measure.divergence_store import DivergenceCache, score_missing  # noqa: E402
from persona_assets.measure.paraphrase_scoring import paraphrase_jobs  # noqa: E402
from persona_assets.measure.response_jobs import response_jobs  # noqa: E402


def _score(llm, jobs, directory: Path) -> tuple[float, float, int]:
    """Wall seconds, process CPU seconds (less moved by other processes' load) and response tokens teacher-forced."""
    started, cpu = time.perf_counter(), time.process_time()
    stats = score_missing(llm, jobs, DivergenceCache(directory), max_scorers_per_pass=12, responses_per_batch=16)
    return time.perf_counter() - started, time.process_time() - cpu, stats.teacher_forced_tokens


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=Path, required=True, help="a demo run's outputs/generations.json")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--paraphrases", type=int, default=2, help="paraphrases per persona (max_paraphrases)")
    parser.add_argument("--questions", type=int, default=0, help="only the responses to the first n questions (0: all)")
    args = parser.parse_args()
    from resources.llm import CpuLLM

    generations = json.loads(args.generations.read_text())
    n_questions = generations["n_questions"]
    if args.questions:
        n_questions = min(n_questions, args.questions)
        responses = [r for r in generations["responses"] if r["question_index"] < n_questions]
        generations = {**generations, "n_questions": n_questions, "responses": responses}
    evals = build_eval_set(
        REPO / "data" / "personas.yaml",
        REPO / "data" / "questions.yaml",
        persona_subset=generations["persona_names"],
        n_questions=n_questions,
    )
    eval_set = evals.to_dict()
    print(f"{len(generations['responses'])} responses, {len(evals.personas)} personas × {n_questions} questions")
    for round_ in range(args.rounds):
        llm = CpuLLM(model="embedded")  # a new prefix memo each round
        llm.load_for_teacher_forcing()
        with tempfile.TemporaryDirectory() as work:
            load = os.getloadavg()[0]
            wall, cpu, tokens = _score(llm, response_jobs(llm, eval_set, generations, "pair_own"), Path(work) / "div")
            print(f"round {round_ + 1}: divergences {wall:.1f} s ({cpu:.1f} CPU s), {tokens} response tokens")
            jobs = paraphrase_jobs(llm, eval_set, generations, args.paraphrases)
            s, c, n = _score(llm, jobs, Path(work) / "baseline")
            print(
                f"round {round_ + 1}: baseline, {args.paraphrases} paraphrase(s): {s:.1f} s ({c:.1f} CPU s), {n} "
                f"response tokens: {s / wall:.0%} of the divergences' wall time, {c / cpu:.0%} of their CPU time"
            )
            print(f"round {round_ + 1}: load average {load:.1f} before, {os.getloadavg()[0]:.1f} after")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
