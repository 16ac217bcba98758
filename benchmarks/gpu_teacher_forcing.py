"""Benchmark: teacher forcing + per-token JS/KL for a Qwen2.5-7B-shaped model (random weights).

Runs the engine code the GPU resource calls (`resources.fast_engine.batch_response_divergences`,
`lean_generate`, `HFEngine`) on a slice of the study's workload (12 personas × N responses of
~512 tokens) and prints hardware, versions, s/response, tokens/s, achieved TFLOP/s against a
measured bf16 matmul peak, peak memory, padding share, the extrapolated 2,880-sequence run, the
naive and current variants measured in the same run, generation ms/step (lean loop vs
generate()), the kernel's accuracy against the float64 reference, and the noise floor (same
response alone / padded batch / packed; bf16 vs fp32 forward).

Imports only torch, transformers, numpy and this repository's resources/ and
persona_assets/{measure,stats,analysis,inputs,runs} modules, so it runs on a bare GPU machine:
    PYTHONPATH=. python benchmarks/gpu_teacher_forcing.py
and on CPU with a tiny config (CI smoke test):
    PYTHONPATH=. python benchmarks/gpu_teacher_forcing.py --tiny
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from persona_assets.measure.divergence import pair_divergences  # noqa: E402
from resources.fast_divergence import fast_pair_divergences, row_logsumexp, triton_available  # noqa: E402
from resources.fast_engine import batch_response_divergences, lm_head_logits, pack_items  # noqa: E402
from resources.hf_engine import HFEngine  # noqa: E402
from resources.lean_generation import lean_generate  # noqa: E402

FULL_RESPONSES = 240  # 12 personas × 20 questions
N_PERSONAS = 12


def log(msg: str = "") -> None:
    print(msg, flush=True)


class BenchEngine(HFEngine):
    """HFEngine around a model built in memory (no tokenizer: prompts are token ids)."""

    def __init__(self, model, device: str, stop_id: int):
        self.model = model
        self.tokenizer = None
        self.source = None
        self.device = device
        self.dtype = str(next(model.parameters()).dtype)
        self.pad_id = 0
        self.stop_ids = {stop_id}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str):
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


def matmul_peak(device: str, tiny: bool) -> float:
    """Measured dense matmul rate (FLOP/s): bf16 8192³ on CUDA, fp32 512³ on CPU."""
    n = 512 if tiny else 8192
    dtype = torch.float32 if tiny else torch.bfloat16
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(10):
        _, dt = timed(lambda: a @ b, device)
        times.append(dt)
    return 2 * n**3 / statistics.median(times)


def build_model(args, device: str):
    from benchmarks.random_qwen2 import build_random_qwen2, qwen2_config

    config = qwen2_config(tiny=args.tiny, init_std=args.init_std)
    return build_random_qwen2(config, dtype=torch.float32 if args.tiny else torch.bfloat16, device=device), config


def make_workload(args, vocab: int, gen: torch.Generator):
    """12 prompts per question (system prompts of different lengths) and responses of ~L tokens."""

    def ids(n: int) -> list[int]:
        return torch.randint(10, vocab - 10, (n,), generator=gen).tolist()

    systems = [
        ids(int(torch.randint(args.system_min, args.system_max + 1, (1,), generator=gen))) for _ in range(N_PERSONAS)
    ]
    items = []
    for r in range(args.responses):
        question = ids(int(torch.randint(10, 30, (1,), generator=gen)))
        prompts = [[1] + s + [2] + question + [3] for s in systems]
        length = args.response_len - int(torch.randint(0, args.len_jitter + 1, (1,), generator=gen))
        generator = r % N_PERSONAS
        pairs = [(generator, o) for o in range(N_PERSONAS) if o != generator]
        items.append((prompts, ids(length), pairs))
    return items


def flop_count(config, items) -> tuple[float, int, int]:
    """Useful forward FLOPs (matmuls on real tokens + causal attention + LM head on scored
    positions), real tokens, scored tokens."""
    h, layers, inter = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    kv = config.num_key_value_heads * (h // config.num_attention_heads)
    per_token_layer = 2 * (h * h + 2 * h * kv + h * h + 3 * h * inter)
    total = 0.0
    tokens = scored = 0
    for prompts, response, _ in items:
        for p in prompts:
            n = len(p) + len(response) - 1
            tokens += n
            scored += len(response)
            total += n * layers * per_token_layer + 2 * layers * h * n * n  # QKᵀ and PV, causal half
            total += 2 * h * config.vocab_size * len(response)
    return total, tokens, scored


def padding_share(items, max_batch_tokens: int) -> float:
    lengths = [(len(p), max(len(x) + len(r) - 1 for x in p)) for p, r, _ in items]
    padded = real = 0
    for batch in pack_items(lengths, max_batch_tokens):
        width = max(lengths[i][1] for i in batch)
        for i in batch:
            prompts, response, _ = items[i]
            for p in prompts:
                real += len(p) + len(response) - 1
                padded += width
    return 1 - real / padded


def naive_response(engine: HFEngine, item) -> None:
    """One sequence per forward, full-sequence logits, fp32 log-softmax, float64 pairs in a loop."""
    prompts, response, pairs = item
    rows = []
    with torch.inference_mode():
        for p in prompts:
            seq = torch.tensor([list(p) + list(response)[:-1]], device=engine.device)
            logits = engine.model(input_ids=seq).logits[0]
            rows.append(torch.log_softmax(logits[len(p) - 1 :].float(), dim=-1))
            del logits
        logp = torch.stack(rows)
        del rows
        for pair in pairs:
            pair_divergences(logp, [pair], chunk_size=1)


def current_response(engine: HFEngine, item) -> None:
    """The pre-existing path: 12 sequences in one padded batch, sliced LM head, float64 chunked pairs."""
    prompts, response, pairs = item
    logp = engine.response_logprobs(prompts, response)
    pair_divergences(logp, pairs, chunk_size=4)


def rel_err(out, ref) -> dict[str, float]:
    res = {}
    for name in ("js", "kl_ab", "kl_ba"):
        a, b = getattr(out, name).double().cpu(), getattr(ref, name).double().cpu()
        res[name] = float(((a - b).abs() / b.abs().clamp_min(1e-300)).max())
    return res


def diff_stats(a, b) -> str:
    """Max |ΔJS| per token and on the response-mean JS, with the JS scale, between two scorings."""
    da = (a.js - b.js).abs()
    mean_a, mean_b = a.js.mean(dim=1), b.js.mean(dim=1)
    return (
        f"max|dJS| per token {float(da.max()):.3e}, median {float(da.median()):.3e}; "
        f"max|d mean JS| {float((mean_a - mean_b).abs().max()):.3e}; "
        f"max rel d mean JS {float(((mean_a - mean_b).abs() / mean_b.abs()).max()):.3e} "
        f"(mean JS {float(mean_b.mean()):.3e})"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model on CPU (smoke test)")
    parser.add_argument("--responses", type=int, default=12, help="responses timed on the fast path")
    parser.add_argument("--response-len", type=int, default=512)
    parser.add_argument("--len-jitter", type=int, default=64, help="responses are len − U[0, jitter] tokens")
    parser.add_argument("--system-min", type=int, default=20)
    parser.add_argument("--system-max", type=int, default=70)
    parser.add_argument("--max-batch-tokens", type=int, default=16384)
    parser.add_argument("--naive-responses", type=int, default=1)
    parser.add_argument("--current-responses", type=int, default=2)
    parser.add_argument("--gen-batch", type=int, default=240, help="prompts per generation batch")
    parser.add_argument("--gen-steps", type=int, default=32)
    parser.add_argument("--fp32-positions", type=int, default=64, help="response tokens in the bf16-vs-fp32 check")
    parser.add_argument("--init-std", type=float, default=0.02)
    parser.add_argument("--repeat", type=int, default=1, help="timed passes of the fast path (first one reported)")
    parser.add_argument("--batch-sweep", default="", help="comma list of max_batch_tokens to time the forward at")
    parser.add_argument(
        "--skip", default="", help="comma list of sections to skip: naive,current,gen,noise,breakdown,fp32"
    )
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    if args.tiny:
        args.response_len = min(args.response_len, 48)
        args.len_jitter = min(args.len_jitter, 8)
        args.system_min, args.system_max = 5, 12
        args.responses = min(args.responses, 3)
        args.gen_batch = min(args.gen_batch, 4)
        args.gen_steps = min(args.gen_steps, 6)
        args.fp32_positions = min(args.fp32_positions, 8)
        args.max_batch_tokens = min(args.max_batch_tokens, 2048)

    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    import transformers

    log("== hardware and versions")
    log(f"device: {torch.cuda.get_device_name(0) if device == 'cuda' else platform.processor() or 'cpu'}")
    log(
        f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, "
        f"cuda {torch.version.cuda}, triton available: {triton_available()}"
    )
    if triton_available():
        import triton

        log(f"triton {triton.__version__}")
    log(f"args: {vars(args)}")

    peak = matmul_peak(device, args.tiny)
    log(f"measured matmul peak ({'bf16 8192^3' if not args.tiny else 'fp32 512^3'}): {peak / 1e12:.1f} TFLOP/s")

    (model, config), build_s = timed(lambda: build_model(args, device), device)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    log(
        f"model: Qwen2 hidden {config.hidden_size}, {config.num_hidden_layers} layers, vocab {config.vocab_size}, "
        f"{sum(p.numel() for p in model.parameters()) / 1e9:.2f} B params, {weights / 2**30:.1f} GiB; built in "
        f"{build_s:.1f} s"
    )
    engine = BenchEngine(model, device, stop_id=config.vocab_size - 1)
    gen = torch.Generator().manual_seed(1)
    items = make_workload(args, config.vocab_size, gen)
    warm = make_workload(
        argparse.Namespace(**{**vars(args), "responses": 1}), config.vocab_size, torch.Generator().manual_seed(7)
    )

    summary: list[tuple[str, str]] = []

    # ----------------------------------------------------------------- fast path
    log("\n== fast path: packed bf16 forward, sliced LM head (fp32 out), Triton/PyTorch divergences")
    _, warm_s = timed(lambda: batch_response_divergences(engine, warm, max_batch_tokens=args.max_batch_tokens), device)
    log(f"warm-up (compilation, cuBLAS) {warm_s:.2f} s")
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    fast, fast_s = timed(
        lambda: batch_response_divergences(engine, items, max_batch_tokens=args.max_batch_tokens), device
    )
    passes = [fast_s]
    for _ in range(args.repeat - 1):
        passes.append(
            timed(lambda: batch_response_divergences(engine, items, max_batch_tokens=args.max_batch_tokens), device)[1]
        )
    if len(passes) > 1:
        log(f"passes over the same responses: {', '.join(f'{p:.3f}' for p in passes)} s (the first is reported below)")
    peak_mem = torch.cuda.max_memory_allocated() - weights if device == "cuda" else float("nan")
    flops, tokens, scored = flop_count(config, items)
    per_resp = fast_s / len(items)
    pad = padding_share(items, args.max_batch_tokens)
    floor_flops = 2 * 7.6e9 * scored * FULL_RESPONSES / len(items) if not args.tiny else float("nan")
    log(f"responses {len(items)}, sequences {len(items) * N_PERSONAS}, real tokens {tokens}, scored tokens {scored}")
    log(f"time {fast_s:.3f} s -> {per_resp:.4f} s/response, {tokens / fast_s:,.0f} tokens/s")
    log(
        f"useful FLOP {flops:.3e} -> {flops / fast_s / 1e12:.1f} TFLOP/s = {flops / fast_s / peak:.1%} of measured peak"
    )
    log(f"padding share (batches of <= {args.max_batch_tokens} rows x width): {pad:.1%}")
    log(f"peak memory beyond weights: {peak_mem / 2**30:.2f} GiB")
    full = per_resp * FULL_RESPONSES
    log(f"extrapolated full run (240 responses = 2,880 sequences): {full:.1f} s")
    if not args.tiny:
        log(f"issue's floor for that run, 2*7.6e9*scored tokens at measured peak: {floor_flops / peak:.1f} s")
    summary += [
        ("fast s/response", f"{per_resp:.4f}"),
        ("fast full run (s)", f"{full:.1f}"),
        ("fast TFLOP/s (share of peak)", f"{flops / fast_s / 1e12:.1f} ({flops / fast_s / peak:.1%})"),
        ("peak memory beyond weights (GiB)", f"{peak_mem / 2**30:.2f}"),
        ("padding share", f"{pad:.1%}"),
    ]

    # time split: forward only (hidden states) vs divergences, on the same batches
    from resources.fast_engine import packed_hidden_states

    def forward_only():
        lengths = [(len(p), max(len(x) + len(r) - 1 for x in p)) for p, r, _ in items]
        for batch in pack_items(lengths, args.max_batch_tokens):
            seqs = [list(x) + list(items[i][1])[:-1] for i in batch for x in items[i][0]]
            packed_hidden_states(engine, seqs, [(0, 0, 1)])

    _, fwd_s = timed(forward_only, device)
    log(
        f"decoder forward alone: {fwd_s:.3f} s ({fwd_s / fast_s:.0%} of the fast path); "
        f"LM head + divergences: {fast_s - fwd_s:.3f} s ({(fast_s - fwd_s) / len(items) * 1e3:.1f} ms/response)"
    )
    summary.append(("forward share of fast path", f"{fwd_s / fast_s:.0%}"))
    if args.batch_sweep:
        for budget in [int(b) for b in args.batch_sweep.split(",")]:
            saved = args.max_batch_tokens
            args.max_batch_tokens = budget
            forward_only()
            _, sweep_s = timed(forward_only, device)
            args.max_batch_tokens = saved
            log(
                f"decoder forward alone, batches of <= {budget} rows x width: {sweep_s:.3f} s "
                f"({(flops - 2 * config.hidden_size * config.vocab_size * scored) / sweep_s / 1e12:.1f} TFLOP/s), "
                f"padding share {padding_share(items, budget):.1%}"
            )

    # ------------------------------------------------------------- accuracy
    log("\n== accuracy of the divergence kernel vs the float64 reference (same logits)")
    prompts, response, pairs = items[0]
    seqs = [list(p) + list(response)[:-1] for p in prompts]
    states = packed_hidden_states(engine, seqs, [(k, len(p) - 1, len(response)) for k, p in enumerate(prompts)])
    head = model.get_output_embeddings()
    logits = lm_head_logits(torch.stack(states), head.weight)
    positions = min(64, logits.shape[1])
    sub = logits[:, :positions].contiguous()
    ref = pair_divergences(torch.log_softmax(sub.double(), dim=-1), pairs)
    for backend in ["torch"] + (["triton"] if device == "cuda" and triton_available() else []):
        out = fast_pair_divergences(sub, pairs, backend=backend)
        log(
            f"{backend}: max relative error {rel_err(out, ref)} (JS range "
            f"{float(ref.js.min()):.2e}..{float(ref.js.max()):.2e})"
        )
    # near-identical distributions: the same logits plus tiny perturbations
    g = torch.Generator(device=sub.device).manual_seed(3)
    base = sub[:1].float()
    scales = torch.tensor([0.0, 1e-3, 3e-3, 1e-2], device=sub.device)[:, None, None]
    near = base + scales * torch.randn((4, *base.shape[1:]), generator=g, device=sub.device) * base.std()
    near_pairs = [(0, 1), (0, 2), (0, 3), (1, 2)]
    ref = pair_divergences(torch.log_softmax(near.double(), dim=-1), near_pairs)
    for backend in ["torch"] + (["triton"] if device == "cuda" and triton_available() else []):
        out = fast_pair_divergences(near, near_pairs, backend=backend)
        log(
            f"{backend} near-identical: max relative error {rel_err(out, ref)} "
            f"(JS range {float(ref.js.min()):.2e}..{float(ref.js.max()):.2e})"
        )
    del logits, sub, near

    # ------------------------------------------------------- naive and current
    if "naive" not in skip and args.naive_responses:
        naive_items = items[: args.naive_responses]
        naive_response(engine, warm[0])
        _, naive_s = timed(lambda: [naive_response(engine, it) for it in naive_items], device)
        naive_per = naive_s / len(naive_items)
        log(
            f"\n== naive (one sequence per forward, full logits, fp32 softmax, float64 pairs in a loop): "
            f"{naive_per:.3f} s/response -> full run {naive_per * FULL_RESPONSES:.1f} s; fast path is "
            f"{naive_per / per_resp:.1f}x faster"
        )
        summary.append(("naive full run (s)", f"{naive_per * FULL_RESPONSES:.1f}"))
    if "current" not in skip and args.current_responses:
        cur_items = items[: args.current_responses]
        current_response(engine, warm[0])
        _, cur_s = timed(lambda: [current_response(engine, it) for it in cur_items], device)
        cur_per = cur_s / len(cur_items)
        log(
            f"== previous path (12 per batch, sliced LM head, float64 chunked pairs): {cur_per:.3f} s/response "
            f"-> full run {cur_per * FULL_RESPONSES:.1f} s; fast path is {cur_per / per_resp:.1f}x faster"
        )
        summary.append(("previous path full run (s)", f"{cur_per * FULL_RESPONSES:.1f}"))

    # ------------------------------------------------------------- noise floor
    if "noise" not in skip:
        log("\n== noise floor (same response, different batch compositions; bf16 forward)")
        item = items[0]
        packed = fast[0]
        padded12 = batch_response_divergences(engine, [item], max_batch_tokens=args.max_batch_tokens)[0]
        # alone: each scoring sequence in its own forward (no padding at all)
        prompts, response, pairs = item
        alone_logits = []
        for p in prompts:
            st = packed_hidden_states(engine, [list(p) + list(response)[:-1]], [(0, len(p) - 1, len(response))])
            alone_logits.append(lm_head_logits(st[0], head.weight))
        alone = fast_pair_divergences(torch.stack(alone_logits), pairs)
        del alone_logits
        log(f"padded batch of 12 vs alone: {diff_stats(padded12, alone)}")
        log(f"packed with other responses vs alone: {diff_stats(packed, alone)}")
        log(f"packed vs padded batch of 12: {diff_stats(packed, padded12)}")
        summary.append(
            (
                "noise: max rel d mean JS packed vs alone",
                f"{float(((packed.js.mean(1) - alone.js.mean(1)).abs() / alone.js.mean(1)).max()):.2e}",
            )
        )

    # ------------------------------------------------------------- generation
    if "gen" not in skip:
        log(
            f"\n== generation: {args.gen_batch} prompts in one batch, greedy; decode ms/step = (t[K steps] - t[1 "
            f"step]) / (K - 1), K = {args.gen_steps}"
        )
        gen_prompts = [items[i % len(items)][0][i % N_PERSONAS] for i in range(args.gen_batch)]
        variants = {
            "generate()": lambda k: engine.generate(gen_prompts, max_new_tokens=k, batch_size=args.gen_batch),
            "lean, dynamic cache": lambda k: lean_generate(
                engine, gen_prompts, max_new_tokens=k, batch_size=args.gen_batch
            ),
            "lean, static cache": lambda k: lean_generate(
                engine, gen_prompts, max_new_tokens=k, batch_size=args.gen_batch, cache_impl="static"
            ),
        }
        outputs, per_step = {}, {}
        for name, fn in variants.items():
            fn(2)  # warm-up at the full batch shape (allocator, kernels)
            _, one = timed(lambda: fn(1), device)
            outputs[name], many = timed(lambda: fn(args.gen_steps), device)
            per_step[name] = (many - one) / (args.gen_steps - 1)
            log(
                f"{name:22s} prefill+1 step {one * 1e3:8.1f} ms; decode {per_step[name] * 1e3:6.2f} ms/step; "
                f"240 x 512 tokens: {(one + per_step[name] * 511) * math.ceil(240 / args.gen_batch):6.1f} s"
            )
        ref_tokens = [g.token_ids for g in outputs["generate()"]]
        for name in list(variants)[1:]:
            same = sum(a.token_ids == b for a, b in zip(outputs[name], ref_tokens))
            log(f"{name}: identical token sequences to generate(): {same}/{len(ref_tokens)}")
            summary.append(
                (f"gen {name} ms/step (identical)", f"{per_step[name] * 1e3:.2f} ({same}/{len(ref_tokens)})")
            )
        summary.append(("gen generate() ms/step", f"{per_step['generate()'] * 1e3:.2f}"))

    # ----------------------------------------------------- divergence breakdown
    if "breakdown" not in skip:
        log("\n== LM head + divergence breakdown for one response (median of 5, ms)")
        prompts, response, pairs = items[0]
        seqs = [list(p) + list(response)[:-1] for p in prompts]
        picked = torch.stack(
            packed_hidden_states(engine, seqs, [(k, len(p) - 1, len(response)) for k, p in enumerate(prompts)])
        )

        def bench(fn, reps=5):
            fn()
            return statistics.median(timed(fn, device)[1] for _ in range(reps)) * 1e3

        from resources.fast_divergence import _pairs_torch, _pairs_triton, pair_index

        logits32 = lm_head_logits(picked, head.weight)
        lines = {
            "LM head, fp32 out": bench(lambda: lm_head_logits(picked, head.weight)),
            "LM head, bf16 out": bench(lambda: torch.mm(picked.reshape(-1, picked.shape[-1]), head.weight.t())),
        }
        flat = logits32.reshape(-1, logits32.shape[-1])
        backends = ["torch"] + (["triton"] if device == "cuda" and triton_available() else [])
        for backend in backends:
            lines[f"logsumexp ({backend})"] = bench(lambda: row_logsumexp(flat, backend=backend))
        lse = row_logsumexp(flat).reshape(logits32.shape[:2])
        index = pair_index(pairs, len(prompts), logits32.device)
        lines["pairs (torch)"] = bench(lambda: _pairs_torch(logits32, lse, index, 8192, 4), reps=2)
        if "triton" in backends:
            from resources import fast_divergence as fd

            for block in (1024, 2048, 4096):
                for warps in (4, 8):
                    for lane in (False, True):
                        lines[f"pairs (triton, block {block}, {warps} warps, lane_acc {lane})"] = bench(
                            lambda: _pairs_triton(logits32, lse, index, block, lane, warps)
                        )
            lines["pairs (triton, default, bf16 logits)"] = bench(
                lambda: _pairs_triton(logits32.bfloat16(), lse, index, 2048)
            )
            _ = fd
        for name, ms in lines.items():
            log(f"{name:40s} {ms:9.2f}")
        del logits32, flat

    # ------------------------------------------------------------ bf16 vs fp32
    if "fp32" not in skip:
        prompts, response, pairs = items[0]
        response = list(response)[: args.fp32_positions]
        log(f"\n== bf16 vs fp32 forward (one response, first {len(response)} tokens, 12 scorers)")
        low = batch_response_divergences(engine, [(prompts, response, pairs)])[0]
        if device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = False
        model.to(torch.float32)
        high = batch_response_divergences(engine, [(prompts, response, pairs)])[0]
        log(f"bf16 vs fp32: {diff_stats(low, high)}")
        summary.append(
            (
                "noise: max rel d mean JS bf16 vs fp32",
                f"{float(((low.js.mean(1) - high.js.mean(1)).abs() / high.js.mean(1)).max()):.2e}",
            )
        )

    log("\n== summary")
    for key, value in summary:
        log(f"{key:45s} {value}")


if __name__ == "__main__":
    with torch.inference_mode():
        main()
