"""Benchmark: a slice of the N = 111 workload on 1 and on K GPUs, through the divergence store.

Slice: S source personas × Q questions (default 8 × 4 = 32 responses of ~512 tokens), each
response scored against all other personas (pair-own: 110 pairs) in passes of at most 12
scorers — 120 teacher-forced sequences per response. Qwen2.5-7B shapes, random weights, bf16.

Runs the code the `score_divergence_shard` steps run: `score_missing` (passes, batches, atomic
per-response cache entries) over `shard_of(..., k, K)` with `fast_engine.batch_response_divergences`
(packed bf16 forward, Triton pair kernel). One process per GPU, as under Dagster's multiprocess
executor; each builds the model on its GPU, warms up, waits at a barrier, then scores its shard.
Wall time = last shard's end − first shard's start. Prints tokens/s, MFU (useful FLOPs against the
measured bf16 matmul peak of GPU 0 and the H100 SXM datasheet 989 TFLOP/s), peak memory per GPU,
the speed-up, and how far the K-GPU cache entries lie from the 1-GPU ones.

Imports only torch, transformers and this repository's resources/ and
persona_assets/{measure,stats,analysis,inputs,runs}:
    PYTHONPATH=. python benchmarks/gpu_scale.py --gpus 1,2
    PYTHONPATH=. python benchmarks/gpu_scale.py --tiny           # CPU smoke test
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

DATASHEET_BF16 = 989.4e12  # H100 SXM dense bf16 (H200: the same compute)


def log(msg: str = "") -> None:
    print(msg, flush=True)


def build_model(tiny: bool, device: str):
    from benchmarks.random_qwen2 import build_random_qwen2, qwen2_config

    config = qwen2_config(tiny=tiny)
    return build_random_qwen2(config, dtype=torch.float32 if tiny else torch.bfloat16, device=device), config


def make_jobs(args, vocab: int):
    """ResponseJobs of the slice: N personas' prompts per question, S sources' responses."""
    from persona_assets.measure.divergence_store import ResponseJob

    gen = torch.Generator().manual_seed(1)

    def ids(n: int) -> list[int]:
        return torch.randint(10, vocab - 10, (n,), generator=gen).tolist()

    systems = [
        ids(int(torch.randint(args.system_min, args.system_max + 1, (1,), generator=gen))) for _ in range(args.personas)
    ]
    jobs = []
    for q in range(args.questions):
        question = ids(int(torch.randint(10, 30, (1,), generator=gen)))
        prompts = {k: [1] + s + [2] + question + [3] for k, s in enumerate(systems)}
        for source in range(args.sources):
            generator = source * (args.personas // args.sources)
            length = args.response_len - int(torch.randint(0, args.len_jitter + 1, (1,), generator=gen))
            pairs = [(generator, o) for o in range(args.personas) if o != generator]
            jobs.append(ResponseJob(f"{q:02d}{source:02d}" + "0" * 60, ids(length), prompts, pairs))
    return jobs


class EngineScorer:
    """What GpuLLM.batch_response_divergences does, around a bare engine."""

    def __init__(self, engine, max_batch_tokens: int, variant: str = "eager"):
        self.engine, self.max_batch_tokens = engine, max_batch_tokens
        parts = variant.split("+")
        self.shared_prefixes, self.liger = "shared" in parts, "liger" in parts  # GpuLLM's two settings

    def batch_response_divergences(self, items, *, pair_chunk_size: int, progress=None):
        from resources.fast_engine import batch_response_divergences

        return batch_response_divergences(
            self.engine,
            items,
            max_batch_tokens=self.max_batch_tokens,
            shared_prefixes=self.shared_prefixes,
            liger=self.liger,
        )


def worker(rank: int, n_gpus: int, args_dict: dict, cache_dir: str, barrier, queue) -> None:
    from persona_assets.measure.divergence_store import DivergenceCache, score_missing, shard_of
    from resources.hf_engine import HFEngine

    args = argparse.Namespace(**args_dict)
    device = f"cuda:{rank}" if not args.tiny else "cpu"
    if device.startswith("cuda"):
        torch.cuda.set_device(rank)
    with torch.inference_mode():
        model, config = build_model(args.tiny, device)
        engine = HFEngine.__new__(HFEngine)
        engine.model, engine.tokenizer, engine.source, engine.device = model, None, None, device
        engine.dtype, engine.pad_id, engine.stop_ids = str(next(model.parameters()).dtype), 0, {config.vocab_size - 1}
        scorer = EngineScorer(engine, args.max_batch_tokens, args.variant)
        jobs = make_jobs(args, config.vocab_size)
        mine = shard_of(jobs, [len(j.response_ids) for j in jobs], rank, n_gpus)
        # warm-up: one response's first pass (kernels, cuBLAS), into a throwaway cache
        with tempfile.TemporaryDirectory() as warm_dir:
            warm = [
                type(mine[0])(mine[0].key, mine[0].response_ids, mine[0].prompts, mine[0].pairs[: args.max_scorers - 1])
            ]
            score_missing(
                scorer,
                warm,
                DivergenceCache(Path(warm_dir)),
                max_scorers_per_pass=args.max_scorers,
                responses_per_batch=args.responses_per_batch,
            )
        weights = sum(p.numel() * p.element_size() for p in model.parameters())
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        barrier.wait()
        start = time.time()
        stats = score_missing(
            scorer,
            mine,
            DivergenceCache(Path(cache_dir)),
            max_scorers_per_pass=args.max_scorers,
            responses_per_batch=args.responses_per_batch,
        )
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        end = time.time()
        peak = (torch.cuda.max_memory_allocated() - weights) if device.startswith("cuda") else float("nan")
        queue.put(
            {
                "rank": rank,
                "start": start,
                "end": end,
                "responses": stats.responses_computed,
                "sequences": stats.teacher_forced_sequences,
                "scored_tokens": stats.teacher_forced_tokens,
                "forward_tokens": sum(
                    len(j.prompts[s]) + len(j.response_ids) - 1 for j in mine for s in _scorers(j, args.max_scorers)
                ),
                "flops": _flops(config, mine, args.max_scorers),
                "peak_beyond_weights": peak,
                "weights": weights,
            }
        )


def _scorers(job, max_scorers: int) -> list[int]:
    from persona_assets.measure.divergence_store import scoring_passes

    return [s for scorers, _, _ in scoring_passes(job.pairs, max_scorers) for s in scorers]


def _flops(config, jobs, max_scorers: int) -> float:
    """Useful FLOPs: matmuls on real tokens + causal attention + LM head on scored positions."""
    h, layers, inter = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    kv = config.num_key_value_heads * (h // config.num_attention_heads)
    per_token_layer = 2 * (h * h + 2 * h * kv + h * h + 3 * h * inter)
    total = 0.0
    for job in jobs:
        t = len(job.response_ids)
        for s in _scorers(job, max_scorers):
            n = len(job.prompts[s]) + t - 1
            total += n * layers * per_token_layer + 2 * layers * h * n * n + 2 * h * config.vocab_size * t
    return total


def run(n_gpus: int, args, cache_dir: str) -> dict:
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(n_gpus), ctx.Queue()
    procs = [ctx.Process(target=worker, args=(r, n_gpus, vars(args), cache_dir, barrier, queue)) for r in range(n_gpus)]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"worker exited with {p.exitcode}")
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    total = {
        k: sum(r[k] for r in results) for k in ("responses", "sequences", "scored_tokens", "forward_tokens", "flops")
    }
    return {"wall": wall, "per_gpu": sorted(results, key=lambda r: r["rank"]), **total}


def matmul_peak(device: str) -> float:
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(10):
        torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return 2 * 8192**3 / statistics.median(times)


def compare(dir_a: str, dir_b: str) -> tuple[int, float]:
    """Entries in both caches, and the largest relative difference of any pair value."""
    worst, count = 0.0, 0
    for path in Path(dir_a).glob("*/*.json"):
        other = Path(dir_b) / path.parent.name / path.name
        a, b = json.loads(path.read_text())["pairs"], json.loads(other.read_text())["pairs"]
        assert a.keys() == b.keys()
        count += 1
        for key in a:
            for name in ("js", "kl_ab", "kl_ba"):
                worst = max(worst, abs(a[key][name] - b[key][name]) / max(abs(b[key][name]), 1e-300))
    return count, worst


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model on CPU (smoke test)")
    parser.add_argument("--gpus", default="1,2", help="GPU counts to run, e.g. 1,2")
    parser.add_argument("--personas", type=int, default=111)
    parser.add_argument("--sources", type=int, default=8)
    parser.add_argument("--questions", type=int, default=4)
    parser.add_argument("--response-len", type=int, default=512)
    parser.add_argument("--len-jitter", type=int, default=64)
    parser.add_argument("--system-min", type=int, default=20)
    parser.add_argument("--system-max", type=int, default=70)
    parser.add_argument("--max-scorers", type=int, default=12)
    parser.add_argument("--responses-per-batch", type=int, default=16)
    parser.add_argument("--max-batch-tokens", type=int, default=16384)
    parser.add_argument(
        "--variant",
        choices=["eager", "shared", "liger", "shared+liger"],
        default="eager",
        help="GpuLLM's teacher-forcing settings: shared prefixes and/or Liger kernels (eager: both off, the default)",
    )
    args = parser.parse_args(argv)
    if args.tiny:
        args.response_len, args.len_jitter, args.system_min, args.system_max = 24, 4, 5, 12
        args.max_batch_tokens = 2048
    counts = [int(g) for g in args.gpus.split(",")]

    import transformers

    cuda = torch.cuda.is_available() and not args.tiny
    log("== hardware and versions")
    devices = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if cuda
        else platform.processor() or "cpu"
    )
    log(f"devices: {devices}")
    log(
        f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, cuda "
        f"{torch.version.cuda}"
    )
    log(f"args: {vars(args)}")
    if cuda and max(counts) > torch.cuda.device_count():
        raise SystemExit(f"asked for {max(counts)} GPUs, {torch.cuda.device_count()} visible")
    peak = matmul_peak("cuda:0") if cuda else float("nan")
    if cuda:
        log(
            f"measured bf16 matmul peak (8192^3, GPU 0): {peak / 1e12:.1f} TFLOP/s; datasheet "
            f"{DATASHEET_BF16 / 1e12:.1f}"
        )
    log(
        f"slice: {args.sources} source personas x {args.questions} questions = {args.sources * args.questions} "
        "responses, "
        f"each scored against {args.personas - 1} other personas, <= {args.max_scorers} scorers per pass"
    )

    results, dirs = {}, {}
    with tempfile.TemporaryDirectory() as root:
        for n in counts:
            dirs[n] = str(Path(root) / f"cache_{n}")
            r = results[n] = run(n, args, dirs[n])
            log(f"\n== {n} GPU(s)")
            for g in r["per_gpu"]:
                log(
                    f"  GPU {g['rank']}: {g['responses']} responses, {g['sequences']} sequences, "
                    f"{g['end'] - g['start']:.2f} s, peak memory beyond weights {g['peak_beyond_weights'] / 2**30:.2f} "
                    "GiB "
                    f"(weights {g['weights'] / 2**30:.1f} GiB)"
                )
            log(
                f"  wall {r['wall']:.2f} s; responses {r['responses']}, sequences {r['sequences']} "
                f"({r['sequences'] / r['responses']:.0f} per response)"
            )
            log(
                f"  forward tokens {r['forward_tokens']:,} -> {r['forward_tokens'] / r['wall']:,.0f} tokens/s; "
                f"scored tokens {r['scored_tokens']:,} -> {r['scored_tokens'] / r['wall']:,.0f} scored tokens/s"
            )
            if cuda:
                tflops = r["flops"] / r["wall"]
                log(
                    f"  useful {r['flops']:.3e} FLOP -> {tflops / 1e12:.1f} TFLOP/s; MFU {tflops / n / peak:.1%} of "
                    "measured "
                    f"peak per GPU, {tflops / n / DATASHEET_BF16:.1%} of datasheet"
                )
            log(
                f"  per response {r['wall'] / r['responses'] * n:.3f} GPU-s; "
                f"s per forward token per GPU {r['wall'] * n / r['forward_tokens'] * 1e6:.2f} us"
            )
        log("\n== summary")
        base = results[counts[0]]
        for n in counts:
            r = results[n]
            line = f"{n} GPU(s): wall {r['wall']:.2f} s, {r['forward_tokens'] / r['wall']:,.0f} tokens/s"
            if cuda:
                line += f", MFU {r['flops'] / r['wall'] / n / peak:.1%} (measured peak)"
            line += f", peak beyond weights {max(g['peak_beyond_weights'] for g in r['per_gpu']) / 2**30:.2f} GiB"
            if n != counts[0]:
                line += f", speed-up vs {counts[0]} GPU: {base['wall'] / r['wall']:.2f}x"
            log(line)
        for n in counts[1:]:
            entries, worst = compare(dirs[counts[0]], dirs[n])
            log(
                f"cache entries {counts[0]} GPU vs {n} GPUs: {entries} responses in both, max relative difference of a "
                f"pair value {worst:.2e} (different packed batches; bf16 noise floor ~6e-5)"
            )
        per_response_gpu_s = base["wall"] * counts[0] / base["responses"]
        log(
            f"extrapolated N = 111 x 20 questions (2,220 responses) on 1 GPU at this rate: "
            f"{per_response_gpu_s * 2220 / 60:.1f} min teacher forcing"
        )


if __name__ == "__main__":
    main()
