"""Benchmark: the whole Phase-1 run on one GPU, in the order of the asset graph, for a Qwen2.5-7B-shaped
model (random weights, no download).

Stages, each the code the GPU resource and the assets call (timed one by one):
  eval_set         build_eval_set on data/personas.yaml + data/questions.yaml (12 personas × 20 questions)
  prompts          the chat template of every (persona, question) through a real tokenizer
  generations      lean greedy decode loop (`GpuLLM.generate` without vLLM), up to 512 tokens, one
                   batch of 240; then the generation cache, text decoding and generations.csv
  persona_cosine   last-prompt hidden states at the default layers, centred cosine
  divergences      `score_missing` (content-addressed cache) over `batch_response_divergences`:
                   all 2,880 teacher-forced sequences, pair-own pairs, 16 responses per call
  aggregation      per-response rows → JS/KL matrices and the per-(pair, question) table (CSVs)
  analysis         inputs_from_run, cosine pre-check, leakage correlations, kill gates (2,000 bootstraps)
  figures          build_figures + PNG/HTML (altair, vl-convert)

A random model rarely emits its stop token, so every response runs to 512 tokens: the worst case.
Leakage is a user input; a seeded random table of all directed pairs stands in for it so that every
leakage analysis and the hero figure run (their cost does not depend on the values).

Imports only torch/transformers/numpy/yaml and this repository's resources/ and
persona_assets/{measure,stats,analysis,inputs,runs} (GpuLLM itself imports dagster, so `EngineLLM`
below repeats its two delegations). Stages whose
packages are missing on the GPU machine (pandas, scipy, altair, vl-convert, dagster for the figures
module) are not run there: their inputs are written to --save-dir, and
    python benchmarks/gpu_phase1.py --analysis-from DIR
runs them on another machine with inputs of the same size and prints the combined total.

    PYTHONPATH=. python benchmarks/gpu_phase1.py --tokenizer DIR [--tf-variants eager,compiled]
    # unshared/shared prefixes x without/with Liger, value differences against the first, noise floor:
    PYTHONPATH=. python benchmarks/gpu_phase1.py --tokenizer DIR --tf-variants eager,shared,liger,shared+liger \
        --noise-floor-samples 2
    PYTHONPATH=. python benchmarks/gpu_phase1.py --tiny          # CPU smoke test, seconds
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from persona_assets.measure.cosine import CENTRING_RUN_MEAN, cosine_by_layer, default_layers  # noqa: E402
from persona_assets.measure.responses import (  # noqa: E402
    generate_into_cache,
    missing_items,
    pair_value_rows,
    response_records,
)
from persona_assets.measure.divergence_store import (  # noqa: E402
    DivergenceCache,
    ResponseJob,
    cached_rows,
    response_key,
    score_missing,
)
from persona_assets.inputs.eval_set import build_eval_set  # noqa: E402
from persona_assets.measure.precision import PRECISION_KEY, scoring_precision_nats  # noqa: E402
from persona_assets.runs.generation_cache import GenerationCache, generation_items  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# The goals of the issue "teacher forcing at 1.2 x the hardware floor" (generation: the earlier issue's).
GOALS = {"generation": 15.0, "teacher forcing + divergences": 35.0, "phase-1 without model load": 48.0}
ANALYSIS_PACKAGES = {
    "aggregation": ["pandas"],
    "analysis": ["pandas", "scipy"],
    "figures": ["pandas", "scipy", "altair", "vl_convert", "dagster"],
}


def log(msg: str = "") -> None:
    print(msg, flush=True)


def missing_packages(stage: str) -> list[str]:
    return [name for name in ANALYSIS_PACKAGES[stage] if importlib.util.find_spec(name) is None]


class Timer:
    """Wall time per stage (CUDA synchronised at both ends)."""

    def __init__(self, device: str):
        self.device = device
        self.stages: dict[str, float] = {}

    def run(self, name: str, fn):
        self._sync()
        start = time.perf_counter()
        out = fn()
        self._sync()
        self.stages[name] = time.perf_counter() - start
        log(f"[stage] {name:32s} {self.stages[name]:8.2f} s")
        return out

    def _sync(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()


class EngineLLM:
    """What GpuLLM (resources/gpu_llm.py) does on CUDA without vLLM, minus Dagster: the same calls."""

    def __init__(self, engine, *, max_batch_tokens: int, compile_layers: bool = False, generation_cache: str = "fixed"):
        self.engine = engine
        self.max_batch_tokens = max_batch_tokens
        self.compile_layers = compile_layers
        self.generation_cache = generation_cache
        self.sdpa_backend = None  # teacher forcing under one SDPA kernel (None: torch's choice)
        self.shared_prefixes = False  # GpuLLM.shared_prefixes
        self.liger = False  # GpuLLM.liger_teacher_forcing
        self.vocab = len(engine.tokenizer)
        self.dtype = engine.dtype  # loaded: generation and hidden states
        self.scoring_dtype = engine.dtype  # GpuLLM.scoring_dtype (float32: upcast for teacher forcing)

    def describe(self) -> dict:
        return {
            "model": "random-weights",
            "model_name": "Qwen2-7B-shaped (random)",
            "model_fingerprint": "bench-random",
            "dtype": self.dtype,
            "scoring_dtype": self.scoring_dtype,
            "device": self.engine.device,
            "resource": "GpuLLM",
            "generation_backend": "transformers",
        }

    def chat_prompt_ids(self, system: str, user: str) -> list[int]:
        return self.engine.chat_prompt_ids(system, user)

    def decode(self, token_ids) -> str:
        # Random weights emit ids beyond the tokenizer's vocabulary: fold them into it, so the
        # decode costs what decoding real ids costs (the ids themselves are what is scored).
        return self.engine.tokenizer.decode([t % self.vocab for t in token_ids], skip_special_tokens=True)

    def generate(self, prompts, *, max_new_tokens: int, batch_size: int, progress=None):
        from resources.lean_generation import lean_generate

        return lean_generate(
            self.model_engine(),
            prompts,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            progress=progress,
            cache_impl=self.generation_cache,
        )

    def model_engine(self):
        return self.scoring_engine(self.dtype)  # the loaded dtype (generation, hidden states), as LLMResource

    def scoring_engine(self, dtype: str | None = None):
        from resources.weight_upcast import cast_engine

        cast_engine(self.engine, dtype or self.scoring_dtype)
        return self.engine

    def batch_response_divergences(self, items, *, pair_chunk_size: int, progress=None, dtype: str | None = None):
        import contextlib

        from resources.fast_engine import batch_response_divergences

        self.scoring_engine(dtype)
        with contextlib.ExitStack() as stack:
            if self.compile_layers:
                stack.enter_context(compiled_decoder_layers(self.engine))
            if self.sdpa_backend is not None:
                from torch.nn.attention import sdpa_kernel

                stack.enter_context(sdpa_kernel(self.sdpa_backend))
            return batch_response_divergences(
                self.engine,
                items,
                max_batch_tokens=self.max_batch_tokens,
                progress=progress,
                shared_prefixes=self.shared_prefixes,
                liger=self.liger,
            )

    def last_prompt_hidden_states(self, prompts, layers, *, batch_size: int, progress=None):
        return self.model_engine().last_prompt_hidden_states(prompts, layers, batch_size=batch_size, progress=progress)

    def num_layers(self) -> int:
        return self.engine.num_layers


class compiled_decoder_layers:
    """Within the block every decoder layer runs through torch.compile (regional compilation).

    A candidate speed-up of the teacher-forcing forward (fuses RMSNorm, rotary, SiLU·mul and
    residual adds around the GEMMs); it lives here, not in resources/, because it was measured
    slower on the full run (benchmarks/results/gpu_phase1_h200.txt). Generation and hidden-state
    stages keep the eager layers; the compiled callables are kept on the engine (compiled once).
    """

    def __init__(self, engine):
        self.layers = list(engine._decoder().layers)
        if getattr(engine, "_compiled_layer_calls", None) is None:
            import torch

            engine._compiled_layer_calls = [torch.compile(layer._call_impl) for layer in self.layers]
        self.calls = engine._compiled_layer_calls

    def __enter__(self):
        for layer, call in zip(self.layers, self.calls):
            layer._compiled_call_impl = call  # what nn.Module.compile() sets; None = eager

    def __exit__(self, *exc):
        for layer in self.layers:
            layer._compiled_call_impl = None


def _sdpa_variants() -> dict:
    try:
        from torch.nn.attention import SDPBackend
    except ImportError:  # torch without the attention module: only eager / compiled
        return {}
    return {
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
    }


SDPA_VARIANTS = _sdpa_variants()


def build_engine(args, device: str, tokenizer):
    import torch

    from benchmarks.random_qwen2 import build_random_qwen2, qwen2_config
    from resources.hf_engine import HFEngine
    from resources.model_loading import ModelSource

    config = qwen2_config(tiny=args.tiny, tiny_vocab=len(tokenizer), tiny_layers=4)
    dtype = torch.float32 if args.tiny else torch.bfloat16
    model = build_random_qwen2(config, dtype=dtype, device=device)
    source = ModelSource("directory", "random", None, "bench-random", "Qwen2-7B-shaped (random)")
    return HFEngine(model, tokenizer, source, device, str(dtype).replace("torch.", ""))


def load_tokenizer(args):
    from transformers import AutoTokenizer

    if args.tokenizer:
        return AutoTokenizer.from_pretrained(args.tokenizer)
    from resources.model_loading import load_tokenizer as load, resolve_model_source

    return load(resolve_model_source("embedded"))


def synthetic_leakage(names: list[str]) -> dict:
    rng = random.Random(0)
    rows = [{"source": s, "target": t, "rate": rng.random()} for s in names for t in names if s != t]
    return {"available": True, "path": "synthetic (seeded random rates, all directed pairs)", "rows": rows}


# ------------------------------------------------------------------------------- GPU stages
def run_generations(args, llm: EngineLLM, evals, work: Path) -> dict:
    """What the generations asset does (cache lookup, generate what is missing, decode, CSV)."""
    cache = GenerationCache(work / "cache" / "generations")
    items = generation_items(llm, evals, args.max_new_tokens)
    lengths = [len(i["prompt_ids"]) for i in items]
    log(
        f"prompts: {len(items)}, chat-template lengths {min(lengths)}..{max(lengths)} tokens (mean "
        f"{sum(lengths) / len(lengths):.0f})"
    )
    start = time.perf_counter()
    generate_into_cache(
        llm, missing_items(items, cache), cache, max_new_tokens=args.max_new_tokens, batch_size=args.gen_batch
    )
    decode_s = time.perf_counter() - start
    responses = response_records(items, cache, llm.decode)
    if importlib.util.find_spec("pandas") is not None:
        import pandas as pd

        from persona_assets.runs.storage import write_csv

        write_csv(work / "outputs" / "generations.csv", pd.DataFrame(responses).drop(columns=["token_ids"]))
    n_tokens = [r["n_tokens"] for r in responses]
    steps = max(n_tokens)
    log(
        f"generated {sum(n_tokens)} tokens, {sum(r['hit_max_new_tokens'] for r in responses)}/{len(responses)} hit "
        f"max_new_tokens; decode loop {decode_s:.2f} s = {decode_s / steps * 1e3:.1f} ms/step over {steps} steps "
        f"(prefill included)"
    )
    return {
        "persona_names": evals.persona_names,
        "n_questions": len(evals.questions),
        "responses": responses,
        "prompts": {
            (p, q): items[p * len(evals.questions) + q]["prompt_ids"]
            for p in range(len(evals.personas))
            for q in range(len(evals.questions))
        },
    }


def run_cosine(args, llm: EngineLLM, evals, prompts: dict) -> dict:
    """What the persona_cosine asset does."""
    num_layers = llm.num_layers()
    layers = default_layers(num_layers)
    ordered = [prompts[(p, q)] for p in range(len(evals.personas)) for q in range(len(evals.questions))]
    states = llm.last_prompt_hidden_states(ordered, layers, batch_size=args.cosine_batch).numpy()
    n_p, n_q = len(evals.personas), len(evals.questions)
    matrices = {name: m.tolist() for name, m in cosine_by_layer(states, n_p, n_q, layers).items()}
    return {
        "model": llm.describe(),
        "layers": layers,
        "num_model_layers": num_layers,
        "centring": CENTRING_RUN_MEAN,
        "persona_names": evals.persona_names,
        "n_questions": n_q,
        "cosine_matrices": matrices,
    }


def divergence_jobs(llm: EngineLLM, generations: dict) -> list[ResponseJob]:
    """What `response_jobs` in the divergence_matrices asset builds (pair-own pairs)."""
    names = generations["persona_names"]
    info = llm.describe()
    jobs = []
    for r in generations["responses"]:
        g, q = names.index(r["persona"]), r["question_index"]
        key = response_key(
            model_fingerprint=info["model_fingerprint"],
            dtype=info["scoring_dtype"],
            device_kind=info["device"].split(":")[0],
            generation_key=r["cache_key"],
            response_ids=r["token_ids"],
            generator_prompt_ids=generations["prompts"][(g, q)],
        )
        pairs = [(g, other) for other in range(len(names)) if other != g]  # scorer_pairs(..., "pair_own")
        jobs.append(
            ResponseJob(
                key, list(r["token_ids"]), {s: generations["prompts"][(s, q)] for s in range(len(names))}, pairs
            )
        )
    return jobs


def run_divergences(args, llm: EngineLLM, jobs: list[ResponseJob], cache_dir: Path):
    stats = score_missing(
        llm, jobs, DivergenceCache(cache_dir), max_scorers_per_pass=12, responses_per_batch=args.responses_per_batch
    )
    return stats, cached_rows(jobs, DivergenceCache(cache_dir))


def log_value_differences(label: str, reference: list, values: list) -> float:
    """Largest difference of each response-mean value (JS, both KLs) over every (response, pair) of the study;
    returns the largest |difference| of a response-mean JS."""
    largest_js = 0.0
    for name in ("js", "kl_ab", "kl_ba"):
        base = [v[name] for vs in reference for v in vs]
        other = [v[name] for vs in values for v in vs]
        diffs = [abs(a - b) for a, b in zip(other, base)]
        rel = max(d / abs(b) for d, b in zip(diffs, base) if b)
        same = sum(a == b for a, b in zip(other, base))
        largest_js = max(diffs) if name == "js" else largest_js
        log(
            f"{label}: response-mean {name} max abs difference {max(diffs):.2e} nats, max relative {rel:.2e} over "
            f"{len(base)} pairs ({same} bit-identical)"
        )
    return largest_js


def log_noise_floor(args, llm: EngineLLM, jobs: list[ResponseJob], generations: dict, variant: str) -> dict:
    """The run's noise floor (resources/floor_rescoring.py, as the divergence asset measures it) on
    the first variant's path: how far batch composition alone moves a response-mean value."""
    from resources.floor_rescoring import measure_noise_floor

    parts = variant.split("+")
    llm.shared_prefixes, llm.liger = "shared" in parts, "liger" in parts
    descriptions = [
        {"generator": r["persona"], "question_index": r["question_index"]} for r in generations["responses"]
    ]
    floor = measure_noise_floor(
        llm, jobs, descriptions, samples=args.noise_floor_samples, max_scorers_per_pass=12, pair_chunk_size=4
    )
    llm.shared_prefixes, llm.liger = False, False
    log(
        f"noise floor ({variant}, {args.noise_floor_samples} responses re-scored in other batch compositions): "
        f"JS {floor.get('js_abs_nats')} nats abs, {floor.get('js_rel')} relative"
    )
    scoring = (floor.get("precision") or {}).get("scoring") or {}
    log(f"scoring precision ({variant}, the same responses in float32): {scoring.get(PRECISION_KEY)} nats")
    return floor


def log_variants_against_precision(changes: dict[str, float], floor: dict, first: str) -> None:
    """Each variant's largest change of a response-mean JS against the first variant, next to the run's own
    float32 scoring-precision bound: a variant whose change is inside it may become the default."""
    bound = scoring_precision_nats(floor)
    for variant, change in changes.items():
        verdict = "no bound measured" if bound is None else ("inside" if change <= bound else "OUTSIDE")
        log(
            f"{variant} vs {first}: largest |change| of a response-mean JS {change:.2e} nats; the run's float32 "
            f"scoring-precision bound {bound if bound is None else format(bound, '.2e')} nats: {verdict}"
        )


def per_response_rows(generations: dict, jobs: list[ResponseJob], values: list) -> list[dict]:
    """The divergence_per_response rows, by the function the divergence_matrices asset's table uses."""
    return pair_value_rows(generations["responses"], jobs, values, generations["persona_names"])


# -------------------------------------------------------------------------- CPU-side stages
def run_aggregation(state: dict, work: Path) -> dict:
    """What divergence_matrices does after scoring: matrices, per-(pair, question) table, CSVs."""
    import pandas as pd

    from persona_assets.measure.aggregate import pair_matrices, pair_question_table
    from persona_assets.runs.storage import write_csv

    names = state["persona_names"]
    per_response = pd.DataFrame(state["rows"])
    matrices = pair_matrices(per_response, names, "pair_own")
    table = pair_question_table(per_response, names, "pair_own")
    write_csv(work / "outputs" / "divergence_per_response.csv", per_response)
    write_csv(work / "outputs" / "divergence_per_pair_question.csv", table)
    return {
        "persona_names": names,
        "method": {"averaging": "pair_own"},
        **matrices.to_dict(),
        "per_pair_question": table.to_dict(orient="records"),
        "model": state.get("model"),
        "per_response_csv": str(work / "outputs" / "divergence_per_response.csv"),
    }


def run_analysis(args, divergence_matrices: dict, persona_cosine: dict, leakage: dict) -> tuple:
    """analysis_inputs, cosine_precheck, leakage_correlations, kill_gate_verdicts (asset defaults)."""
    import pandas as pd

    from persona_assets.analysis import correlation_report as analyses
    from persona_assets.analysis.matrices import inputs_from_run

    per_response = pd.read_csv(divergence_matrices["per_response_csv"])
    inputs = inputs_from_run(divergence_matrices, persona_cosine, leakage, per_response)
    precheck = analyses.cosine_precheck(inputs, n_boot=args.n_bootstrap, seed=0)
    correlations, _, _ = analyses.leakage_correlations(inputs, n_boot=args.n_bootstrap, seed=0)
    verdicts = analyses.kill_gate_verdicts(
        inputs, correlations, min_std=0.05, min_ratio=3.0, max_abs_rho=0.80, min_relative_question_spread=0.5
    )
    log(
        f"kill gates: discrimination {'KILLED' if verdicts['discrimination']['killed'] else 'passed'}, "
        f"redundancy {'KILLED' if verdicts['redundancy']['killed'] else 'passed'}; precheck sets {list(precheck)}"
    )
    return inputs, correlations


def run_figures(inputs, correlations, work: Path) -> int:
    from persona_assets.analysis.figure_set import build_figures
    from persona_assets.analysis import charts

    built = build_figures(inputs, correlations)
    charts.save_figures(built, work / "figures")  # what the figures asset does: files and their previews
    return len(built)


def run_cpu_stages(args, state: dict, work: Path, timer: Timer) -> list[str]:
    """aggregation → analysis → figures where their packages exist; returns the stages left out."""
    left = []
    if missing := missing_packages("aggregation"):
        return [f"aggregation ({', '.join(missing)} missing)", "analysis", "figures"]
    divergence_matrices = timer.run("aggregation", lambda: run_aggregation(state, work))
    if missing := missing_packages("analysis"):
        return [f"analysis ({', '.join(missing)} missing)", "figures"]
    inputs, correlations = timer.run(
        "analysis", lambda: run_analysis(args, divergence_matrices, state["persona_cosine"], state["leakage"])
    )
    if args.skip_figures:
        left.append("figures (--skip-figures)")
    elif missing := missing_packages("figures"):
        left.append(f"figures ({', '.join(missing)} missing)")
    else:
        count = timer.run("figures", lambda: run_figures(inputs, correlations, work))
        log(f"figures: {count} charts written as PNG + HTML")
    return left


# ---------------------------------------------------------------------------------- report
def report(stages: dict[str, float], model_load: float, where: dict[str, str]) -> None:
    log("\n== Phase-1 stage times (s)")
    for name, seconds in stages.items():
        log(f"{name:40s} {seconds:8.2f}   {where.get(name, '')}")
    total = sum(seconds for name, seconds in stages.items() if not name.startswith("("))
    log(f"{'phase-1 without model load':40s} {total:8.2f}")
    log(f"{'model load (here: random weights built on the device)':40s} {model_load:8.2f}")
    log(f"{'phase-1 with model load':40s} {total + model_load:8.2f}")
    for name, seconds in stages.items():
        if name.startswith("(divergences, "):
            variant = name[len("(divergences, ") : -1]
            swapped = total - stages["divergences"] + seconds
            log(f"{f'phase-1 without model load, {variant} teacher forcing':40s} {swapped:8.2f}")
    log("\n== goals (first variant; fused kernels and shared prefixes)")
    measured = {
        "generation": stages.get("generations"),
        "teacher forcing + divergences": stages.get("divergences"),
        "phase-1 without model load": total,
    }
    for goal, limit in GOALS.items():
        value = measured[goal]
        if value is None:
            continue
        verdict = "met" if value <= limit else f"gap {value - limit:+.1f} s ({value / limit - 1:+.0%})"
        log(f"{goal:40s} {value:8.2f} s vs <= {limit:.0f} s: {verdict}")


def gpu_main(args) -> None:
    import torch
    import transformers

    device = "cpu" if args.tiny or not torch.cuda.is_available() else "cuda"
    log("== hardware and versions")
    log(f"device: {torch.cuda.get_device_name() if device == 'cuda' else platform.processor() or 'cpu'}")
    log(
        f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, "
        f"cuda {torch.version.cuda}"
    )
    log(
        "packages here: "
        + ", ".join(
            f"{n} {'yes' if importlib.util.find_spec(n) else 'NO'}"
            for n in ("yaml", "pandas", "scipy", "altair", "vl_convert", "dagster", "triton")
        )
    )
    log(f"args: {vars(args)}")
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="phase1-"))
    timer = Timer(device)

    evals = timer.run(
        "eval_set",
        lambda: build_eval_set(
            REPO / "data" / "personas.yaml",
            REPO / "data" / "questions.yaml",
            persona_subset=args.personas,
            n_questions=args.n_questions,
        ),
    )
    tokenizer = load_tokenizer(args)
    start = time.perf_counter()
    engine = build_engine(args, device, tokenizer)
    if device == "cuda":
        torch.cuda.synchronize()
    model_load = time.perf_counter() - start
    model = engine.model
    log(
        f"model: Qwen2 hidden {model.config.hidden_size}, {model.config.num_hidden_layers} layers, vocab "
        f"{model.config.vocab_size}, {sum(p.numel() for p in model.parameters()) / 1e9:.2f} B params, {engine.dtype}; "
        f"built in {model_load:.1f} s; tokenizer vocabulary {len(tokenizer)} (stop ids {sorted(engine.stop_ids)})"
    )
    llm = EngineLLM(engine, max_batch_tokens=args.max_batch_tokens, generation_cache=args.generation_cache)

    with torch.inference_mode():
        generations = timer.run("generations", lambda: run_generations(args, llm, evals, work))
        persona_cosine = timer.run("persona_cosine", lambda: run_cosine(args, llm, evals, generations["prompts"]))
        jobs = divergence_jobs(llm, generations)
        variants = args.tf_variants.split(",")
        changes: dict[str, float] = {}  # variant -> largest |change| of a response-mean JS against the first
        results = []  # per variant, in order (a variant may repeat, e.g. to see the first pass's one-time costs)
        for k, variant in enumerate(variants):
            parts = variant.split("+")
            llm.compile_layers = "compiled" in parts
            llm.sdpa_backend = next((SDPA_VARIANTS[p] for p in parts if p in SDPA_VARIANTS), None)
            llm.shared_prefixes, llm.liger = "shared" in parts, "liger" in parts
            name = "divergences" if k == 0 else f"(divergences, {variant}, pass {k + 1})"
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            stats, values = timer.run(
                name, lambda: run_divergences(args, llm, jobs, work / "cache" / f"divergences-{k}-{variant}")
            )
            results.append(values)
            peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
            log(
                f"{variant}: {stats.responses_computed} responses, {stats.teacher_forced_sequences} teacher-forced "
                f"sequences, {stats.teacher_forced_tokens} scored tokens, "
                f"{stats.teacher_forced_tokens / stats.seconds:,.0f} "
                f"tokens/s; peak GPU memory {peak:.1f} GiB"
            )
            if variant == "compiled":
                from torch._dynamo.utils import counters

                log(f"torch.compile: {dict(counters['stats'])}")
            if k:
                changes[variant] = log_value_differences(f"{variant} vs {variants[0]}", results[0], values)
        llm.compile_layers, llm.sdpa_backend, llm.shared_prefixes, llm.liger = False, None, False, False
        if args.noise_floor_samples:
            floor = timer.run(
                "(noise floor, first variant's path)",
                lambda: log_noise_floor(args, llm, jobs, generations, variants[0]),
            )
            log_variants_against_precision(changes, floor, variants[0])
    state = {
        "persona_names": evals.persona_names,
        "rows": per_response_rows(generations, jobs, results[0]),
        "model": llm.describe(),
        "persona_cosine": persona_cosine,
        "leakage": synthetic_leakage(evals.persona_names),
    }
    engine = model = llm = None  # drop the references: the GPU memory goes back before the analysis
    if args.defer_analysis:
        left = ["aggregation (--defer-analysis)", "analysis", "figures"]
    else:
        left = run_cpu_stages(args, state, work, timer)
    stages = dict(timer.stages)
    where = {name: "here" for name in stages}
    if left:
        log(f"\nnot run here: {'; '.join(left)}")
    if args.save_dir:
        save = Path(args.save_dir)
        save.mkdir(parents=True, exist_ok=True)
        (save / "phase1_state.json").write_text(json.dumps(state))
        (save / "phase1_gpu_stages.json").write_text(
            json.dumps(
                {
                    "stages": stages,
                    "model_load": model_load,
                    "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                    "left": left,
                    "args": vars(args),
                }
            )
        )
        log(f"inputs of the stages not run here saved to {save} (run them with --analysis-from)")
    report(stages, model_load, where)


def analysis_main(args) -> None:
    """Run the stages the GPU machine could not (same inputs), then the combined report."""
    folder = Path(args.analysis_from)
    saved = json.loads((folder / "phase1_gpu_stages.json").read_text())
    state = json.loads((folder / "phase1_state.json").read_text())
    log(
        f"== stages not run on the GPU machine ({saved['device']}), on {platform.processor() or 'this CPU'}: "
        f"{'; '.join(saved['left']) or 'none'}"
    )
    log(
        f"python {platform.python_version()}; same inputs: {len(state['rows'])} per-response pair rows, "
        f"{len(state['persona_names'])} personas"
    )
    args.skip_figures = args.skip_figures or saved["args"].get("skip_figures", False)
    args.n_bootstrap = saved["args"]["n_bootstrap"]
    timer = Timer("cpu")
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="phase1-analysis-"))
    left = run_cpu_stages(args, state, work, timer)
    if left:
        log(f"still not run: {'; '.join(left)}")
    # Stages the GPU machine ran are recomputed here only to feed the ones it could not; its times count.
    stages = dict(saved["stages"])
    where = {name: saved["device"] for name in stages}
    for name, seconds in timer.stages.items():
        if name in stages:
            log(f"({name} recomputed here as input to the next stages: {seconds:.2f} s, not counted)")
        else:
            stages[name], where[name] = seconds, "this CPU"
    report(stages, saved["model_load"], where)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model on CPU, 4 personas × 2 questions (smoke test)")
    parser.add_argument(
        "--tokenizer", default="", help="tokenizer directory (default: the embedded SmolLM2 conversion)"
    )
    parser.add_argument("--n-questions", type=int, default=20)
    parser.add_argument("--personas", default="", help="comma list of persona names (default: all)")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument(
        "--gen-batch", type=int, default=240, help="prompts per generation batch (configs/full_12x20.yaml)"
    )
    parser.add_argument("--cosine-batch", type=int, default=16, help="CosineConfig.batch_size default")
    parser.add_argument("--responses-per-batch", type=int, default=16, help="DivergenceConfig default")
    parser.add_argument(
        "--max-batch-tokens", type=int, default=16384, help="GpuLLM.teacher_forcing_batch_tokens default"
    )
    parser.add_argument("--n-bootstrap", type=int, default=2000, help="AnalysisConfig default")
    parser.add_argument(
        "--tf-variants",
        default="eager",
        help="comma list of teacher-forcing variants (eager, compiled, flash, efficient, cudnn: eager "
        "under that SDPA kernel; shared: shared prefixes; liger: Liger's fused kernels; combine "
        "with '+', e.g. shared+liger); the first feeds the analysis",
    )
    parser.add_argument(
        "--noise-floor-samples",
        type=int,
        default=0,
        help="after the variants, measure the run's noise floor on the first variant's path "
        "(DivergenceConfig.noise_floor_samples: 2); 0 = off",
    )
    parser.add_argument(
        "--generation-cache",
        default="fixed",
        choices=["fixed", "dynamic", "static"],
        help="lean_generate's cache_impl (GpuLLM.generation_cache default: fixed)",
    )
    parser.add_argument("--skip-figures", action="store_true")
    parser.add_argument(
        "--defer-analysis",
        action="store_true",
        help="run no CPU stage here, as if pandas were missing (with --save-dir)",
    )
    parser.add_argument(
        "--work-dir", default="", help="where caches, CSVs and figures go (default: a temporary folder)"
    )
    parser.add_argument("--save-dir", default="", help="write the inputs of stages not run here (for --analysis-from)")
    parser.add_argument("--analysis-from", default="", help="run the saved stages here and print the combined report")
    args = parser.parse_args(argv)
    args.personas = [p for p in args.personas.split(",") if p]
    if args.tiny:
        args.personas = args.personas or ["software_engineer", "kindergarten_teacher", "villain", "assistant"]
        args.n_questions = min(args.n_questions, 2)
        args.max_new_tokens = min(args.max_new_tokens, 8)
        args.n_bootstrap = min(args.n_bootstrap, 50)
    if args.analysis_from:
        analysis_main(args)
    else:
        gpu_main(args)


if __name__ == "__main__":
    main()
