"""Benchmark: how long the GPU idles during teacher forcing through `score_missing`, and where.

Runs the divergence step's own path (`score_missing` → `batch_response_divergences` → Triton
kernels, through benchmarks/gpu_phase1.py's `EngineLLM`, as the GPU resource calls it) on a subset
of the Phase-1 workload: 12 personas × --questions questions, their chat-template prompts, random
responses of --response-tokens tokens, Qwen2.5-7B shapes, random weights, bf16.

1. a warm-up pass over the same responses (one-time costs: Triton compilation, GEMM and attention
   plans for these shapes);
2. --passes timed passes, each with a fresh cache (wall time; host time inside the engine calls
   and inside `DivergenceCache.put`);
3. one pass under torch.profiler with CUDA activity only (kernels and copies are traced on the GPU;
   the host is not instrumented, so it runs about as fast as unprofiled). GPU busy time is the
   union of the kernel and copy intervals; idle = wall − busy, split into idle inside the engine
   calls and between them (host timestamps mapped onto the trace through a marker kernel
   launched right after a sync), the idle gaps grouped by the kernels on either side, and the
   GPU time per kernel name.

--code DIR imports resources/ and persona_assets/ from DIR instead of this checkout, to measure
an earlier version the same way, e.g.
    git archive <commit> resources persona_assets | tar -x -C .cache/before
    PYTHONPATH=. python benchmarks/gpu_tf_stalls.py --tokenizer DIR --code .cache/before
--values-out FILE writes the response-mean JS/KL of the last timed pass (compare two versions).
--tiny runs on CPU in seconds (no profile): the smoke test in tests/benchmarks/.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def log(msg: str = "") -> None:
    print(msg, flush=True)


# ----------------------------------------------------------------------- trace arithmetic
def merged_busy(
    intervals: list[tuple[float, float, str]],
) -> tuple[list[tuple[float, float]], list[tuple[float, str, str]]]:
    """Union of (start, end, name) intervals, and the gaps between them as (length, before, after).

    `before` names the interval that ended last before the gap, `after` the one that starts it.
    """
    busy: list[tuple[float, float]] = []
    gaps: list[tuple[float, str, str]] = []
    last_name = ""
    for start, end, name in sorted(intervals):
        if busy and start <= busy[-1][1]:
            if end >= busy[-1][1]:
                busy[-1] = (busy[-1][0], end)
                last_name = name
            continue
        if busy:
            gaps.append((start - busy[-1][1], last_name, name))
        busy.append((start, end))
        last_name = name
    return busy, gaps


def busy_within(busy: list[tuple[float, float]], begin: float, end: float) -> float:
    return sum(max(0.0, min(e, end) - max(s, begin)) for s, e in busy)


def short_name(kernel: str, width: int = 44) -> str:
    """A kernel's name without template arguments and signature, e.g. 'sm90_xmma_gemm_bf16bf16...'."""
    if kernel.startswith(("Memcpy", "Memset")):
        return kernel[:width]  # e.g. 'Memcpy HtoD (Pageable -> Device)'
    name = kernel.removeprefix("void ").replace("(anonymous namespace)::", "")
    for stop in ("<", "("):
        name = name.split(stop)[0]
    return name.split("::")[-1][:width] or kernel[:width]


def gpu_intervals(trace_path: Path) -> list[tuple[float, float, str]]:
    """(start µs, end µs, name) of every kernel, copy and memset in a chrome trace of torch.profiler."""
    events = json.loads(trace_path.read_text())["traceEvents"]
    return [
        (float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0.0)), e["name"])
        for e in events
        if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")
    ]


# ----------------------------------------------------------------------------- workload
class Timed:
    """Accumulates host seconds and (start, end) perf_counter windows of calls to `fn`."""

    def __init__(self, fn):
        self.fn, self.seconds, self.windows = fn, 0.0, []

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            end = time.perf_counter()
            self.seconds += end - start
            self.windows.append((start, end))


def build_jobs(args, llm, evals, vocab: int):
    import random

    from benchmarks.gpu_phase1 import divergence_jobs

    rng = random.Random(0)
    prompts = {
        (p, q): llm.chat_prompt_ids(persona.prompt, question)
        for p, persona in enumerate(evals.personas)
        for q, question in enumerate(evals.questions)
    }
    responses = [
        {
            "persona": persona.name,
            "question_index": q,
            "cache_key": f"bench-{p}-{q}",
            "token_ids": [rng.randrange(vocab) for _ in range(args.response_tokens)],
        }
        for p, persona in enumerate(evals.personas)
        for q in range(len(evals.questions))
    ]
    return divergence_jobs(llm, {"persona_names": evals.persona_names, "responses": responses, "prompts": prompts})


def scoring_pass(args, llm, jobs, cache_dir: Path, sync):
    """One score_missing pass with host timers; returns (wall s, engine-call timer, put timer)."""
    from persona_assets.measure.divergence_store import DivergenceCache, score_missing

    cache = DivergenceCache(cache_dir)
    calls, puts = Timed(llm.batch_response_divergences), Timed(cache.put)
    llm.batch_response_divergences, cache.put = calls, puts
    try:
        sync()
        start = time.perf_counter()
        score_missing(llm, jobs, cache, max_scorers_per_pass=12, responses_per_batch=args.responses_per_batch)
        sync()
        wall = time.perf_counter() - start
    finally:
        del llm.batch_response_divergences  # back to the class's method
    return wall, calls, puts


def profiled_pass(args, llm, jobs, cache_dir: Path, trace_path: Path) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from persona_assets.measure.divergence_store import DivergenceCache, score_missing

    cache = DivergenceCache(cache_dir)
    calls = Timed(llm.batch_response_divergences)
    llm.batch_response_divergences = calls
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        torch.cuda._sleep(1000)  # marker kernel: its start is host time t0 on the trace's clock
        score_missing(llm, jobs, cache, max_scorers_per_pass=12, responses_per_batch=args.responses_per_batch)
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    del llm.batch_response_divergences
    prof.export_chrome_trace(str(trace_path))
    intervals = gpu_intervals(trace_path)
    origin = min(s for s, _, _ in intervals)  # the marker
    busy, gaps = merged_busy(intervals)
    busy_s = sum(e - s for s, e in busy) / 1e6
    to_trace = lambda host: origin + (host - t0) * 1e6  # noqa: E731
    inside_wall = calls.seconds
    inside_busy = sum(busy_within(busy, to_trace(a), to_trace(b)) for a, b in calls.windows) / 1e6
    log(
        f"profiled pass: wall {wall:.3f} s, GPU busy {busy_s:.3f} s ({busy_s / wall:.1%}), idle {wall - busy_s:.3f} s "
        f"({1 - busy_s / wall:.1%}); {len(intervals)} kernels/copies"
    )
    log(
        f"  inside the {len(calls.windows)} engine calls: {inside_wall:.3f} s wall, idle "
        f"{inside_wall - inside_busy:.3f} s; "
        f"between them (results to the host, cache writes, the next call's set-up): idle "
        f"{(wall - inside_wall) - (busy_s - inside_busy):.3f} s"
    )
    by_kernel: dict[str, list[float]] = {}
    for start, end, name in intervals:
        by_kernel.setdefault(short_name(name), []).append(end - start)
    log(
        f"  GPU time by kernel (name without template arguments), of {sum(e - s for s, e, _ in intervals) / 1e6:.3f} s:"
    )
    for name, lengths in sorted(by_kernel.items(), key=lambda kv: -sum(kv[1]))[: args.top_kernels]:
        log(f"    {sum(lengths) / 1e6:8.3f} s  {len(lengths):6d} ×  {name}")
    big = [g for g in gaps if g[0] >= args.gap_us]
    log(
        f"  idle gaps ≥ {args.gap_us:.0f} µs: {len(big)}, {sum(g[0] for g in big) / 1e6:.3f} s; "
        f"all {len(gaps)} gaps: {sum(g[0] for g in gaps) / 1e6:.3f} s"
    )
    classes: dict[tuple[str, str], list[float]] = {}
    for length, before, after in big:
        classes.setdefault((short_name(before), short_name(after)), []).append(length)
    log(f"  largest gap classes (≥ {args.gap_us:.0f} µs), by the kernels either side:")
    for (before, after), lengths in sorted(classes.items(), key=lambda kv: -sum(kv[1]))[:10]:
        log(
            f"    {sum(lengths) / 1e3:8.1f} ms  {len(lengths):5d} × (median {sorted(lengths)[len(lengths) // 2]:7.0f} "
            "µs)  "
            f"{before} → {after}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model on CPU, 4 personas × 2 questions, no profile")
    parser.add_argument(
        "--tokenizer", default="", help="tokenizer directory (default: the embedded SmolLM2 conversion)"
    )
    parser.add_argument("--questions", type=int, default=4, help="questions (× 12 personas = responses)")
    parser.add_argument("--response-tokens", type=int, default=512)
    parser.add_argument("--responses-per-batch", type=int, default=16, help="DivergenceConfig default")
    parser.add_argument(
        "--max-batch-tokens", type=int, default=16384, help="GpuLLM.teacher_forcing_batch_tokens default"
    )
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--gap-us", type=float, default=50.0, help="gaps listed by class from this length on")
    parser.add_argument("--top-kernels", type=int, default=14, help="kernels listed by GPU time")
    parser.add_argument("--code", default="", help="import resources/ and persona_assets/ from this directory")
    parser.add_argument("--values-out", default="", help="write the last timed pass's response-mean values here")
    parser.add_argument(
        "--variant",
        default="eager",
        choices=["eager", "shared", "liger", "shared+liger"],
        help="GpuLLM.shared_prefixes and/or GpuLLM.liger_teacher_forcing (as gpu_phase1.py --tf-variants)",
    )
    args = parser.parse_args(argv)
    if args.code:
        sys.path.insert(0, str(Path(args.code).resolve()))
    sys.path.insert(1 if args.code else 0, str(REPO))

    import torch
    import transformers

    import persona_assets
    import resources
    from benchmarks.gpu_phase1 import EngineLLM, build_engine, load_tokenizer
    from persona_assets.measure.divergence_store import DivergenceCache, cached_rows
    from persona_assets.inputs.eval_set import build_eval_set

    device = "cpu" if args.tiny or not torch.cuda.is_available() else "cuda"
    if args.tiny:
        args.questions, args.response_tokens = min(args.questions, 2), min(args.response_tokens, 8)
    log(
        f"device: {torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}; torch {torch.__version__}, "
        f"transformers {transformers.__version__}"
    )
    log(
        f"code: {Path(resources.__file__).parent.parent} (resources), {Path(persona_assets.__file__).parent.parent} "
        "(persona_assets)"
    )
    log(f"args: {vars(args)}")
    personas = ["software_engineer", "kindergarten_teacher", "villain", "assistant"] if args.tiny else []
    evals = build_eval_set(
        REPO / "data" / "personas.yaml",
        REPO / "data" / "questions.yaml",
        persona_subset=personas,
        n_questions=args.questions,
    )
    tokenizer = load_tokenizer(argparse.Namespace(tokenizer=args.tokenizer))
    engine = build_engine(argparse.Namespace(tiny=args.tiny), device, tokenizer)
    llm = EngineLLM(engine, max_batch_tokens=args.max_batch_tokens)
    llm.shared_prefixes, llm.liger = "shared" in args.variant, "liger" in args.variant
    jobs = build_jobs(args, llm, evals, engine.model.config.vocab_size)
    sequences = sum(len({s for pair in job.pairs for s in pair}) for job in jobs)
    log(
        f"{len(jobs)} responses of {args.response_tokens} tokens, {sequences} teacher-forced sequences, "
        f"{args.responses_per_batch} responses per engine call"
    )
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    work = Path(tempfile.mkdtemp(prefix="tf-stalls-"))

    with torch.inference_mode():
        wall, _, _ = scoring_pass(args, llm, jobs, work / "warm", sync)
        log(f"warm-up pass: {wall:.3f} s")
        for k in range(args.passes):
            wall, calls, puts = scoring_pass(args, llm, jobs, work / f"pass{k}", sync)
            log(
                f"timed pass {k + 1}: {wall:.3f} s = {wall / len(jobs) * 1e3:.1f} ms/response "
                f"(≈ {wall / len(jobs) * 240:.1f} s for 240); inside {len(calls.windows)} engine calls "
                f"{calls.seconds:.3f} s, "
                f"outside {wall - calls.seconds:.3f} s, of which {len(puts.windows)} cache writes "
                f"{puts.seconds * 1e3:.1f} ms"
            )
        if args.values_out:
            values = cached_rows(jobs, DivergenceCache(work / f"pass{args.passes - 1}"))
            Path(args.values_out).write_text(json.dumps([[v for v in row] for row in values]))
        if device == "cuda":
            profiled_pass(args, llm, jobs, work / "profiled", work / "trace.json")


if __name__ == "__main__":
    main()
