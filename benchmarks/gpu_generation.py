"""Benchmark: greedy generation without vLLM for a Qwen2.5-7B-shaped model (random weights, bf16).

The study's generation step: 12 personas × 20 questions = 240 prompts of ~25-57 tokens, up to 512
new tokens, greedy, in one batch. Runs `resources.lean_generation.lean_generate` (what GpuLLM calls)
and prints hardware, versions, where the eager loop's step time goes (torch.profiler), ms/step,
total s, tokens/s and peak memory of each decode variant measured in the same run:

- dynamic: transformers' dynamic cache, eager (the previous default; same tokens as generate());
- dynamic, efficient SDPA: the same with SDPA restricted to its memory-efficient kernel;
- static:  transformers' StaticCache, eager;
- fixed:   dynamic-cache prefill, fixed-width K/V buffers, grouped-query attention, eager
  (lean_generate runs it with the memory-efficient SDPA kernel on CUDA);
- fixed + CUDA graph: the same step captured once and replayed (GpuLLM's default);

then whether they give the same tokens (the whole batch against the dynamic loop; a subset against
generate() in the same batch composition, with either SDPA choice), whether the decode attention
is bit-identical to transformers' SDPA path (torch's kernel choice, then memory-efficient only),
and (only if the fixed path's bf16 tokens differ from generate()'s) the same comparison in float32.

Imports only torch, transformers and this repository's resources/, so it runs on a bare GPU machine:
    PYTHONPATH=. python benchmarks/gpu_generation.py
and on CPU with a tiny config (CI smoke test):
    PYTHONPATH=. python benchmarks/gpu_generation.py --tiny
"""

from __future__ import annotations

import argparse
import inspect
import platform
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import resources.lean_generation as lean_generation  # noqa: E402
from resources.lean_generation import lean_generate, width_invariant_attention  # noqa: E402
from resources.hf_engine import HFEngine  # noqa: E402

STOP_ID = 2  # a rarely emitted id stands in for EOS: random weights run to max_new_tokens (worst case)
VARIANTS = {  # name -> (lean_generate arguments, SDPA restricted to the memory-efficient kernel)
    "dynamic": ({"cache_impl": "dynamic"}, False),
    "dynamic, efficient SDPA": ({"cache_impl": "dynamic"}, True),
    "static": ({"cache_impl": "static"}, False),
    "fixed": ({"cache_impl": "fixed", "cuda_graph": False}, True),
    "fixed + CUDA graph": ({"cache_impl": "fixed", "cuda_graph": True}, True),
}


def log(msg: str = "") -> None:
    print(msg, flush=True)


class BenchEngine(HFEngine):
    """HFEngine around a model built in memory (no tokenizer: prompts are token ids)."""

    def __init__(self, model, device: str):
        self.model, self.tokenizer, self.source, self.device = model, None, None, device
        self.dtype = str(next(model.parameters()).dtype)
        self.pad_id = 0
        self.stop_ids = {STOP_ID}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def build_model(args, device: str, dtype: torch.dtype):
    from benchmarks.random_qwen2 import build_random_qwen2, qwen2_config

    return build_random_qwen2(qwen2_config(tiny=args.tiny), dtype=dtype, device=device)


def make_prompts(args, vocab: int) -> list[list[int]]:
    """Random ids (no stop id) with the chat-template prompt lengths of the study (25-57 tokens)."""
    gen = torch.Generator().manual_seed(1)
    lengths = torch.randint(args.prompt_min, args.prompt_max + 1, (args.batch,), generator=gen).tolist()
    return [torch.randint(10, vocab, (n,), generator=gen).tolist() for n in lengths]


def run(engine, prompts, steps: int, device: str, variant: str = "dynamic") -> tuple[list[list[int]], float]:
    kwargs, efficient = VARIANTS[variant]
    sync(device)
    start = time.perf_counter()
    with width_invariant_attention(device) if efficient else nullcontext():
        out = lean_generate(engine, prompts, max_new_tokens=steps, batch_size=len(prompts), **kwargs)
    sync(device)
    return [g.token_ids for g in out], time.perf_counter() - start


def generate_reference(engine, prompts, steps: int, device: str, efficient: bool) -> list[list[int]]:
    with width_invariant_attention(device) if efficient else nullcontext():
        return [g.token_ids for g in engine.generate(prompts, max_new_tokens=steps, batch_size=len(prompts))]


def compare(got: list[list[int]], ref: list[list[int]]) -> str:
    same = sum(a == b for a, b in zip(got, ref))
    first = sorted(
        next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        for a, b in zip(got, ref)
        if a != b
    )
    text = f"identical token sequences: {same}/{len(ref)}"
    if first:
        text += f"; first differing step of the others: min {first[0]}, median {first[len(first) // 2]}"
    return text


def versions(device: str) -> None:
    import transformers

    log("== hardware and versions")
    log(f"device: {torch.cuda.get_device_name() if device.startswith('cuda') else platform.processor() or 'cpu'}")
    cuda = torch.version.cuda if device.startswith("cuda") else "-"
    log(
        f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, "
        f"cuda {cuda}"
    )


def attention_check(engine, device: str, dtype: torch.dtype, backend: str) -> None:
    """One layer's decode attention: transformers' SDPA path (repeat_kv over the exact cache width)
    vs `_fixed_width_attention` (grouped query heads over the zero-padded fixed width), and the two
    halves of that change alone, on left-padded random K/V."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    log(f"\n== decode attention vs transformers' SDPA path (one layer, random q/K/V, left padding; SDPA: {backend})")
    config = engine.model.config
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    dim = config.hidden_size // heads
    module = SimpleNamespace(num_key_value_groups=heads // kv_heads, is_causal=True, layer_idx=0, training=False)
    rows = 240 if not device == "cpu" else 6
    gen = torch.Generator(device=device).manual_seed(3)
    for width in (48, 300, 560):
        total = -(-(width + 16) // 16) * 16
        q = torch.randn(rows, heads, 1, dim, device=device, dtype=dtype, generator=gen)
        k = torch.randn(rows, kv_heads, width, dim, device=device, dtype=dtype, generator=gen)
        v = torch.randn(rows, kv_heads, width, dim, device=device, dtype=dtype, generator=gen)
        pads = torch.randint(0, 33, (rows,), device=device, generator=gen)
        mask = (torch.arange(width, device=device)[None, :] >= pads[:, None])[:, None, None, :]
        ref, _ = sdpa_attention_forward(module, q, k, v, mask, scaling=dim**-0.5)

        def padded(t):
            return torch.cat([t, t.new_zeros(rows, kv_heads, total - width, dim)], dim=2)

        wide_mask = torch.cat([mask, mask.new_zeros(rows, 1, 1, total - width)], dim=-1)
        fixed_k, fixed_v = padded(k), padded(v)
        fixed_k[:, :, width - 1] = 0  # the new token's column: written by the attention call
        fixed_v[:, :, width - 1] = 0
        lean_generation._active_buffers = SimpleNamespace(
            keys=[fixed_k], values=[fixed_v], mask=wide_mask, index=torch.tensor([width - 1], device=device)
        )
        try:
            fixed, _ = lean_generation._fixed_width_attention(
                module, q, k[:, :, -1:], v[:, :, -1:], None, scaling=dim**-0.5
            )
        finally:
            lean_generation._active_buffers = None
        grouped = (
            torch.nn.functional.scaled_dot_product_attention(
                q.reshape(rows, kv_heads, heads // kv_heads, dim),
                k,
                v,
                attn_mask=mask,
                scale=dim**-0.5,
            )
            .reshape(rows, heads, 1, dim)
            .transpose(1, 2)
        )
        wide, _ = sdpa_attention_forward(module, q, padded(k), padded(v), wide_mask, scaling=dim**-0.5)
        parts = []
        for name, out in (
            ("grouped, fixed width", fixed),
            ("grouped, exact width", grouped),
            ("repeat_kv, fixed width", wide),
        ):
            diff = (out.float() - ref.float()).abs().max().item()
            parts.append(f"{name}: {'bit-identical' if torch.equal(out, ref) else f'max |diff| {diff:.2e}'}")
        log(f"cache width {width:4d} (fixed {total}): " + "; ".join(parts))


def prefill(engine, prompts, device: str):
    """lean_generate's prefill: left padding, position ids, dynamic cache (returns mask, positions, cache, output)."""
    from transformers import DynamicCache

    model = engine.model
    width = max(len(p) for p in prompts)
    ids = torch.zeros((len(prompts), width), dtype=torch.long)
    attention = torch.zeros_like(ids)
    for row, p in enumerate(prompts):
        ids[row, width - len(p) :] = torch.as_tensor(p)
        attention[row, width - len(p) :] = 1
    ids, attention = ids.to(device), attention.to(device)
    positions = (attention.cumsum(-1) - 1).masked_fill_(attention == 0, 0)
    # transformers renamed `past_key_values` to `cache`, as in lean_generate
    cache = {
        "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values": DynamicCache(
            config=model.config
        )
    }
    out = model(
        input_ids=ids, attention_mask=attention, position_ids=positions, use_cache=True, logits_to_keep=1, **cache
    )
    return attention, positions, cache, out


def kernel_summary(prof, steps: int, device: str) -> None:
    """Kernel time per step by kind (CUDA), then the top ops."""
    key = "self_device_time_total" if device.startswith("cuda") else "self_cpu_time_total"
    events = prof.key_averages()
    if device.startswith("cuda"):
        kinds: dict[str, list[float]] = {}
        for e in events:
            if e.device_type != torch.autograd.DeviceType.CUDA or not getattr(e, key):
                continue
            name = e.key.lower()
            kind = (
                "attention"
                if "fmha" in name or "attention" in name or "sdpa" in name
                else "GEMM"
                if any(w in name for w in ("gemm", "nvjet", "xmma", "cublas", "splitk"))
                else "other (norms, rotary, activations, copies, argmax)"
            )
            kinds.setdefault(kind, [0.0, 0])
            kinds[kind][0] += getattr(e, key)
            kinds[kind][1] += e.count
        log(
            "kernel time per step: "
            + "; ".join(
                f"{k} {t / 1e3 / steps:.2f} ms ({n / steps:.0f} kernels)" for k, (t, n) in sorted(kinds.items())
            )
        )
    log(events.table(sort_by=key, row_limit=12, max_name_column_width=60))


def profile_dynamic(engine, prompts, steps: int, device: str) -> None:
    """torch.profiler over `steps` decode steps of the eager dynamic-cache loop (prefill excluded)."""
    from torch.profiler import ProfilerActivity, profile

    log(f"\n== where the eager dynamic-cache loop's step goes ({len(prompts)} prompts, {steps} decode steps profiled)")
    model = engine.model
    with torch.inference_mode():
        attention, positions, cache, out = prefill(engine, prompts, device)
        width = attention.shape[1]
        mask = torch.cat([attention, attention.new_ones((len(prompts), steps + 1))], dim=-1)
        position = positions[:, -1:]
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
        sync(device)
        start = time.perf_counter()
        with profile(activities=activities) as prof:
            for step in range(steps):
                token = out.logits[:, -1].argmax(-1)
                position = position + 1
                out = model(
                    input_ids=token[:, None],
                    attention_mask=mask[:, : width + step + 1],
                    position_ids=position,
                    use_cache=True,
                    logits_to_keep=1,
                    **cache,
                )
            sync(device)
        wall = (time.perf_counter() - start) / steps
    key = "self_device_time_total" if device.startswith("cuda") else "self_cpu_time_total"
    gpu_ms = sum(getattr(e, key) for e in prof.key_averages()) / 1e3 / steps
    log(
        f"wall {wall * 1e3:.1f} ms/step under the profiler; {'GPU kernel' if device.startswith('cuda') else 'CPU op'} "
        f"time {gpu_ms:.1f} ms/step (the rest: host-side Python/launch gaps and syncs)"
    )
    kernel_summary(prof, steps, device)


def profile_fixed(engine, prompts, steps: int, device: str, max_new_tokens: int) -> None:
    """The fixed-width step run eagerly under the profiler: the kernels its CUDA graph replays."""
    from torch.profiler import ProfilerActivity, profile

    log(
        f"\n== what the fixed-width step's kernels cost ({len(prompts)} prompts, {steps} steps run eagerly; "
        f"the CUDA graph replays these kernels)"
    )
    model = engine.model
    with torch.inference_mode(), width_invariant_attention(device):
        attention, positions, cache, out = prefill(engine, prompts, device)
        total = -(-(attention.shape[1] + max_new_tokens) // 16) * 16
        kv = next(iter(cache.values()))
        buffers = lean_generation._DecodeBuffers(kv, model.config.num_hidden_layers, attention, total)
        token = out.logits[:, -1].argmax(-1)
        unfinished = torch.ones_like(token, dtype=torch.bool)
        stop = torch.tensor([STOP_ID], device=device)
        step = lean_generation._fixed_width_step(model, buffers, token, positions[:, -1:] + 1, unfinished, stop, 0)
        with lean_generation._fixed_width_decoding(model, buffers):
            step()
            step()
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
            sync(device)
            with profile(activities=activities) as prof:
                for _ in range(steps):
                    step()
                sync(device)
    kernel_summary(prof, steps, device)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny random model on CPU (smoke test)")
    parser.add_argument("--batch", type=int, default=240, help="prompts in the one generation batch")
    parser.add_argument("--prompt-min", type=int, default=25)
    parser.add_argument("--prompt-max", type=int, default=57)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--short-steps", type=int, default=64, help="steps of the per-variant comparison")
    parser.add_argument("--profile-steps", type=int, default=8)
    parser.add_argument("--subset", type=int, default=16, help="prompts compared against generate()")
    parser.add_argument("--full-baseline", action="store_true", help="also run the dynamic loop for all steps")
    parser.add_argument("--skip", default="", help="comma list of: attention, profile, short, generate, fp32")
    args = parser.parse_args(argv)
    if args.tiny:
        args.batch, args.max_new_tokens, args.short_steps = min(args.batch, 6), min(args.max_new_tokens, 24), 8
        args.profile_steps, args.subset = 2, 4
    skip = set(filter(None, args.skip.split(",")))
    device = "cpu" if args.tiny or not torch.cuda.is_available() else "cuda"
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    versions(device)
    log(f"args: {vars(args)}")

    start = time.perf_counter()
    engine = BenchEngine(build_model(args, device, dtype), device)
    config = engine.model.config
    weights = torch.cuda.memory_allocated() if device == "cuda" else 0
    log(
        f"\nmodel: Qwen2 hidden {config.hidden_size}, {config.num_hidden_layers} layers, heads "
        f"{config.num_attention_heads}/{config.num_key_value_heads} (q/kv), vocab {config.vocab_size}, "
        f"{sum(p.numel() for p in engine.model.parameters()) / 1e9:.2f} B params, {dtype}, sdpa; "
        f"built in {time.perf_counter() - start:.1f} s"
    )
    prompts = make_prompts(args, config.vocab_size)
    lengths = [len(p) for p in prompts]
    log(
        f"prompts: {len(prompts)}, {min(lengths)}..{max(lengths)} tokens (mean {sum(lengths) / len(lengths):.0f}), "
        f"one batch, greedy, stop id {STOP_ID}"
    )

    if "attention" not in skip:
        attention_check(engine, device, dtype, "torch's default kernel choice")
        with width_invariant_attention(device):
            attention_check(engine, device, dtype, "memory-efficient kernel only")
    if "profile" not in skip:
        profile_dynamic(engine, prompts, args.profile_steps, device)
        profile_fixed(engine, prompts, args.profile_steps, device, args.max_new_tokens)

    summary = []
    if "short" not in skip:
        n = args.short_steps
        log(
            f"\n== decode variants, {len(prompts)} prompts × {n} new tokens (prefill, capture included; "
            f"prefill alone measured with 1 new token, after a warm-up call)"
        )
        run(engine, prompts, 1, device)
        _, prefill = run(engine, prompts, 1, device)
        log(f"prefill (1 new token): {prefill:.2f} s")
        ref = None
        for name in VARIANTS:
            if name.endswith("graph") and device == "cpu":
                continue
            tokens, seconds = run(engine, prompts, n, device, name)
            run_ms = (seconds - prefill) / (n - 1) * 1e3
            ref = ref or tokens
            log(
                f"{name:24s} {seconds:6.2f} s, {run_ms:6.1f} ms/decode step -> {len(prompts)} × "
                f"{args.max_new_tokens} ≈ {prefill + run_ms * (args.max_new_tokens - 1) / 1e3:5.1f} s; "
                f"vs dynamic: {compare(tokens, ref)}"
            )

    log(f"\n== full run: {len(prompts)} prompts × {args.max_new_tokens} new tokens")
    fast_name = "fixed + CUDA graph" if device == "cuda" else "fixed"
    full = {}
    names = [fast_name] + (["dynamic", "dynamic, efficient SDPA"] if args.full_baseline or device == "cpu" else [])
    for name in names:
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        tokens, seconds = run(engine, prompts, args.max_new_tokens, device, name)
        generated = sum(len(t) for t in tokens)
        steps = max(len(t) for t in tokens)
        peak = (torch.cuda.max_memory_allocated() - weights) / 2**30 if device == "cuda" else float("nan")
        hit = sum(len(t) == args.max_new_tokens for t in tokens)
        full[name] = (tokens, seconds)
        log(
            f"{name:24s} {seconds:6.2f} s = {seconds / steps * 1e3:6.1f} ms/step over {steps} steps (prefill and "
            f"capture included); {generated} tokens, {generated / seconds:,.0f} tokens/s; {hit}/{len(tokens)} hit "
            f"max_new_tokens; peak GPU memory beyond the weights {peak:.1f} GiB"
        )
        summary.append(f"{name}: {seconds:.2f} s for {len(tokens)} × {args.max_new_tokens}")
    for name in names[1:]:
        log(f"{fast_name} vs {name}, all {args.max_new_tokens} steps: {compare(full[fast_name][0], full[name][0])}")
    if "short" not in skip:
        _, short = run(engine, prompts, args.short_steps, device, fast_name)
        per_step = (full[fast_name][1] - short) / (args.max_new_tokens - args.short_steps) * 1e3
        log(
            f"{fast_name}: one more decode step costs {per_step:.2f} ms ({args.max_new_tokens} vs "
            f"{args.short_steps} new tokens: {full[fast_name][1]:.2f} - {short:.2f} s); the rest of the full run is "
            f"prefill, warm-up steps and capture"
        )
        summary.append(f"{fast_name}: {per_step:.2f} ms per replayed decode step")

    mismatch = False
    if "generate" not in skip:
        sub = prompts[: args.subset]
        n = args.short_steps
        log(f"\n== against generate(): the first {len(sub)} prompts as their own batch, {n} new tokens")
        for efficient in (False, True):
            expected = generate_reference(engine, sub, n, device, efficient)
            label = "generate(), efficient SDPA" if efficient else "generate()"
            for name in VARIANTS:
                if (name.endswith("graph") and device == "cpu") or VARIANTS[name][1] != efficient:
                    continue
                tokens, _ = run(engine, sub, n, device, name)
                mismatch |= name.startswith("fixed") and tokens != expected
                log(f"{name:24s} vs {label}: {compare(tokens, expected)}")
    if "fp32" not in skip and mismatch and device == "cuda":
        n = args.short_steps
        sub = prompts[: args.subset]
        log(f"\n== float32 weights (bf16 tokens differed): the first {len(sub)} prompts, {n} new tokens")
        del engine
        torch.cuda.empty_cache()
        engine = BenchEngine(build_model(args, device, torch.float32), device)
        expected = generate_reference(engine, sub, n, device, False)
        for name in ("dynamic", fast_name):
            tokens, _ = run(engine, sub, n, device, name)
            log(f"{name:24s} vs generate(), float32: {compare(tokens, expected)}")

    log("\n== summary")
    for line in summary:
        log(line)


if __name__ == "__main__":
    main()
