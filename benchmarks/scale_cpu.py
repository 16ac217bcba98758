"""Benchmark: the divergence step at N = 12 and N = 111 personas on the CPU, tiny random-weight model.

Same questions, same settings; every persona's responses scored pair-own (N − 1 pairs each, in
passes of at most `max_scorers_per_pass` sequences). For each N, in a fresh data directory:
eval_set + generations are materialized first, then `divergence_matrices` alone while a thread
samples the process's resident memory. Each N runs in its own Python process (clean memory).
Prints the step's scoring time per teacher-forced token (from the step's own `seconds` and
`teacher_forced_tokens` metadata), its whole-step wall time per
token, and its peak resident memory above the level before the step. Flat per-token cost and flat
peak memory mean the total grows with the number of scored sequences, not with N².

The model: a Llama with 2 layers, hidden 64 and the embedded SmolLM2 tokenizer (vocabulary
49,152), random weights (init std 0.2, as in the test suite), float32.

    python benchmarks/scale_cpu.py | tee benchmarks/results/scale_cpu_<machine>.txt
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ROLES = [
    "pirate",
    "librarian",
    "chef",
    "astronaut",
    "detective",
    "gardener",
    "poet",
    "lawyer",
    "nurse",
    "farmer",
    "surfer",
    "historian",
    "monk",
    "DJ",
    "barista",
    "sailor",
    "knight",
    "robot",
    "wizard",
    "teacher",
    "coach",
]
STYLES = ["tersely", "cheerfully", "with long metaphors", "in rhyming couplets", "like a news anchor"]


def log(msg: str = "") -> None:
    print(msg, flush=True)


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakSampler:
    def __init__(self, interval: float = 0.002):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def __enter__(self):
        self.base = rss_bytes()
        self.peak = self.base
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join()
        self.peak = max(self.peak, rss_bytes())


def tiny_model(directory: Path, tokenizer_dir: str = "") -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from resources.model_loading import local_model_path, resolve_model_source

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir or local_model_path(resolve_model_source("embedded")))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        initializer_range=0.2,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def personas_file(directory: Path, n: int) -> Path:
    import yaml

    base = yaml.safe_load((REPO / "data" / "personas.yaml").read_text())["personas"]
    extra = [
        {
            "name": f"{ROLES[k % len(ROLES)]}_{k}",
            "prompt": f"You are a {ROLES[k % len(ROLES)]} (number {k}) who answers {STYLES[k % len(STYLES)]}.",
        }
        for k in range(n - len(base))
    ]
    path = directory / f"personas_{n}.yaml"
    path.write_text(yaml.safe_dump({"personas": (base + extra)[:n]}))
    return path


def measure(n: int, model_dir: Path, root: Path, args) -> dict:
    import dagster as dg

    from persona_assets.assets.divergence_matrices import divergence_matrices
    from persona_assets.assets.eval_set import eval_set
    from persona_assets.assets.generations import generations
    from persona_assets.environment import storage_resources
    from resources.llm import CpuLLM

    os.environ["PERSONA_DATA_DIR"] = str(root / f"data_{n}")
    resources = {"llm": CpuLLM(model=str(model_dir)), **storage_resources()}
    ops = {
        "eval_set": {"config": {"personas_file": str(personas_file(root, n)), "n_questions": args.questions}},
        "generations": {"config": {"max_new_tokens": args.max_new_tokens, "batch_size": 64}},
        "divergence_matrices": {"config": {"max_scorers_per_pass": args.max_scorers, "responses_per_batch": 16}},
    }
    upstream = dg.materialize(
        [eval_set, generations],
        resources=resources,
        run_config=dg.RunConfig(ops={k: ops[k] for k in ("eval_set", "generations")}),
    )
    assert upstream.success
    responses = upstream.output_for_node("generations")["responses"]
    with PeakSampler() as sampler:
        started = time.perf_counter()
        result = dg.materialize(
            [divergence_matrices, eval_set.to_source_asset(), generations.to_source_asset()],
            resources=resources,
            run_config=dg.RunConfig(ops={"divergence_matrices": ops["divergence_matrices"]}),
            selection=[divergence_matrices.key],
        )
        step_s = time.perf_counter() - started
    assert result.success
    meta = {k: v.value for k, v in result.asset_materializations_for_node("divergence_matrices")[0].metadata.items()}
    return {
        "n": n,
        "responses": len(responses),
        "response_tokens": sum(r["n_tokens"] for r in responses),
        "sequences": meta["teacher_forced_sequences"],
        "tokens": meta["teacher_forced_tokens"],
        "pairs": meta["pairs_scored_now"],
        "scoring_s": meta["seconds"],
        "step_s": step_s,
        "peak_mib": (sampler.peak - sampler.base) / 2**20,
    }


class EngineScorer:
    """What CpuLLM.batch_response_divergences does (one workspace per call), around a bare HFEngine."""

    def __init__(self, engine):
        self.engine = engine

    def batch_response_divergences(self, items, *, pair_chunk_size: int, progress=None):
        from persona_assets.measure.divergence import pair_divergences

        try:
            from persona_assets.measure.divergence import DivergenceWorkspace
        except ImportError:
            DivergenceWorkspace = None  # noqa: N806

        # Older checkouts (before the workspace) are measured as they are, for before/after runs.
        reuse = (
            {"workspace": DivergenceWorkspace()}
            if "workspace" in inspect.signature(pair_divergences).parameters
            else {}
        )
        return [
            pair_divergences(
                self.engine.response_logprobs(prompts, response_ids), pairs, chunk_size=pair_chunk_size, **reuse
            )
            for prompts, response_ids, pairs in items
        ]


def measure_without_dagster(n: int, model_dir: Path, root: Path, args) -> dict:
    """The divergence step's library calls (jobs, score_missing, reading the cache back) without Dagster.

    For machines without dagster installed: the same `score_missing`, cache and teacher forcing as
    the asset; the asset's glue (DataFrames, matrices, CSVs) is left out of the step time.
    """
    import yaml

    from persona_assets.measure.divergence_store import (
        DivergenceCache,
        ResponseJob,
        cached_rows,
        response_key,
        score_missing,
    )
    from resources.hf_engine import HFEngine

    engine = HFEngine.load(str(model_dir))
    personas = yaml.safe_load(personas_file(root, n).read_text())["personas"]
    questions = yaml.safe_load((REPO / "data" / "questions.yaml").read_text())["questions"][: args.questions]
    prompts = {
        (k, q): engine.chat_prompt_ids(p["prompt"], question)
        for k, p in enumerate(personas)
        for q, question in enumerate(questions)
    }
    order = list(prompts)
    generated = engine.generate([prompts[k] for k in order], max_new_tokens=args.max_new_tokens, batch_size=64)
    cache = DivergenceCache(root / f"data_{n}" / "cache" / "divergences")
    scorer = EngineScorer(engine)
    # Warm-up (first-call costs of the kernels), one pass into a throwaway cache, so that the
    # small N is not charged for them.
    first = generated[0].token_ids
    warm = ResponseJob(
        "0" * 64,
        list(first),
        {s: prompts[(s, 0)] for s in range(n)},
        [(0, o) for o in range(1, min(n, args.max_scorers))],
    )
    score_missing(
        scorer,
        [warm],
        DivergenceCache(root / f"warm_{n}"),
        max_scorers_per_pass=args.max_scorers,
        responses_per_batch=1,
    )
    with PeakSampler() as sampler:
        started = time.perf_counter()
        jobs = [
            ResponseJob(
                response_key(
                    model_fingerprint=engine.source.fingerprint,
                    dtype=engine.dtype,
                    device_kind="cpu",
                    generation_key="",
                    response_ids=g.token_ids,
                    generator_prompt_ids=prompts[(k, q)],
                ),
                list(g.token_ids),
                {s: prompts[(s, q)] for s in range(n)},
                [(k, o) for o in range(n) if o != k],
            )
            for (k, q), g in zip(order, generated)
        ]
        stats = score_missing(scorer, jobs, cache, max_scorers_per_pass=args.max_scorers, responses_per_batch=16)
        assert all(row is not None for row in cached_rows(jobs, cache))
        step_s = time.perf_counter() - started
    return {
        "n": n,
        "responses": len(jobs),
        "response_tokens": sum(len(j.response_ids) for j in jobs),
        "sequences": stats.teacher_forced_sequences,
        "tokens": stats.teacher_forced_tokens,
        "pairs": stats.pairs_computed,
        "scoring_s": stats.seconds,
        "step_s": step_s,
        "peak_mib": (sampler.peak - sampler.base) / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--personas", default="12,111")
    parser.add_argument("--questions", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--max-scorers", type=int, default=12)
    parser.add_argument("--one", type=int, default=0, help=argparse.SUPPRESS)  # internal: measure one N, print JSON
    parser.add_argument(
        "--tokenizer-dir", default="", help="tokenizer files for the tiny model (default: the embedded model's)"
    )
    parser.add_argument(
        "--without-dagster",
        action="store_true",
        help="measure the step's library calls directly (machines without dagster); step time then excludes the "
        "asset's glue",
    )
    parser.add_argument("--model-dir", default="", help=argparse.SUPPRESS)
    parser.add_argument("--root", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        how = measure_without_dagster if args.without_dagster else measure
        print("RESULT " + json.dumps(how(args.one, Path(args.model_dir), Path(args.root), args)), flush=True)
        return

    import torch
    import transformers

    log("== hardware and versions")
    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor(),
    )
    log(f"cpu: {cpu}; {os.cpu_count()} logical cores; torch threads {torch.get_num_threads()}")
    log(f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}")
    log(f"args: {vars(args)}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir = tiny_model(root / "tiny-llama", args.tokenizer_dir)
        for n in [int(x) for x in args.personas.split(",")]:
            cmd = [
                sys.executable,
                __file__,
                "--one",
                str(n),
                "--model-dir",
                str(model_dir),
                "--root",
                str(root),
                "--questions",
                str(args.questions),
                "--max-new-tokens",
                str(args.max_new_tokens),
                "--max-scorers",
                str(args.max_scorers),
            ] + (["--without-dagster"] if args.without_dagster else [])
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"N = {n} failed:\n{done.stderr[-4000:]}")
            out = done.stdout
            r = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
            rows.append(r)
            log(
                f"\n== N = {n}: {r['responses']} responses ({r['response_tokens']} response tokens), {r['pairs']} "
                "pairs, "
                f"{r['sequences']} teacher-forced sequences, {r['tokens']} teacher-forced tokens"
            )
            log(
                f"scoring {r['scoring_s']:.2f} s -> {r['scoring_s'] / r['tokens'] * 1e6:.1f} us per teacher-forced "
                "token; "
                f"whole step {r['step_s']:.2f} s -> {r['step_s'] / r['tokens'] * 1e6:.1f} us per token"
            )
            log(
                f"peak resident memory above the level before the step: {r['peak_mib']:.1f} MiB "
                f"({r['peak_mib'] * 2**20 / r['tokens']:.0f} bytes per teacher-forced token)"
            )
    log("\n== summary")
    base = rows[0]
    for r in rows:
        log(
            f"N = {r['n']:4d}: {r['scoring_s'] / r['tokens'] * 1e6:7.1f} us/token scoring, "
            f"{r['step_s'] / r['tokens'] * 1e6:7.1f} us/token step, "
            f"peak {r['peak_mib']:7.1f} MiB, sequences per response {r['sequences'] / r['responses']:.1f}"
        )
    for r in rows[1:]:
        log(
            f"N = {r['n']} vs N = {base['n']}: per-token scoring time "
            f"x{(r['scoring_s'] / r['tokens']) / (base['scoring_s'] / base['tokens']):.2f}, "
            f"per-token step time x{(r['step_s'] / r['tokens']) / (base['step_s'] / base['tokens']):.2f}, "
            f"peak memory x{r['peak_mib'] / base['peak_mib']:.2f} (total teacher-forced tokens "
            f"x{r['tokens'] / base['tokens']:.1f}, "
            f"N^2 would be x{(r['n'] / base['n']) ** 2:.0f})"
        )


if __name__ == "__main__":
    main()
