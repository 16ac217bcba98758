"""Benchmark: the teacher-forcing forward's kernels at its own shapes, one at a time (GPU).

What bounds the packed forward (issue: teacher forcing at 1.2 × the floor)? This times, at the
shapes one packed forward of the 12 × 20 study has (Qwen2.5-7B, bf16, M = rows × 511 tokens):
- the projection GEMMs of one decoder layer as transformers runs them (q, k, v, o, gate, up,
  down: seven GEMMs) against the fused layout (qkv as one GEMM, gate+up as one GEMM: four);
- attention of the shared-prefix continuation: SDPA with the boolean per-row mask the engine
  passes (prefix columns + causal), against SDPA with lower-right causal alignment and no mask
  (what it could use if every row's prefix had the same length), and the unshared whole-sequence
  causal attention;
- the LM head (float32 out) at one response's rows.
Each figure: median of --repeats timed calls after warm-up, CUDA events; TFLOP/s from the
matmul FLOPs (2·M·N·K; attention 4·B·H·Lq·Lk·D, halved for causal).

    PYTHONPATH=. python benchmarks/gpu_kernel_shapes.py
"""

from __future__ import annotations

import argparse
import statistics

import torch

from benchmarks.hardware import describe

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, INTERMEDIATE, VOCAB = 3584, 28, 4, 128, 18944, 152064


def timed(fn, repeats: int) -> float:
    """Median seconds of `fn()` over `repeats` calls (after 3 warm-up calls)."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def report(name: str, seconds: float, flop: float) -> None:
    print(f"  {name:<58} {seconds * 1e3:8.3f} ms  {flop / seconds / 1e12:7.1f} TFLOP/s", flush=True)


def projections(m: int, repeats: int) -> None:
    dev, dt = "cuda", torch.bfloat16
    x = torch.randn(m, HIDDEN, device=dev, dtype=dt)
    act = torch.randn(m, INTERMEDIATE, device=dev, dtype=dt)
    w = {
        "q": torch.randn(HEADS * HEAD_DIM, HIDDEN, device=dev, dtype=dt) * 0.02,
        "k": torch.randn(KV_HEADS * HEAD_DIM, HIDDEN, device=dev, dtype=dt) * 0.02,
        "v": torch.randn(KV_HEADS * HEAD_DIM, HIDDEN, device=dev, dtype=dt) * 0.02,
        "o": torch.randn(HIDDEN, HEADS * HEAD_DIM, device=dev, dtype=dt) * 0.02,
        "gate": torch.randn(INTERMEDIATE, HIDDEN, device=dev, dtype=dt) * 0.02,
        "up": torch.randn(INTERMEDIATE, HIDDEN, device=dev, dtype=dt) * 0.02,
        "down": torch.randn(HIDDEN, INTERMEDIATE, device=dev, dtype=dt) * 0.02,
    }
    bias = {n: torch.zeros(w[n].shape[0], device=dev, dtype=dt) for n in ("q", "k", "v")}
    qkv = torch.cat([w["q"], w["k"], w["v"]])
    qkv_bias = torch.cat([bias["q"], bias["k"], bias["v"]])
    gate_up = torch.cat([w["gate"], w["up"]])
    lin = torch.nn.functional.linear
    flop = lambda n, k: 2.0 * m * n * k  # noqa: E731
    print(f"== projection GEMMs of one decoder layer, M = {m} tokens")
    total_sep = 0.0
    for name in ("q", "k", "v", "o", "gate", "up", "down"):
        src = act if name == "down" else x
        s = timed(lambda: lin(src, w[name], bias.get(name)), repeats)
        total_sep += s
        report(f"{name} [{w[name].shape[0]} x {w[name].shape[1]}]", s, flop(*w[name].shape))
    layer_flop = sum(flop(*t.shape) for t in w.values())
    report("seven GEMMs, sum", total_sep, layer_flop)
    s_qkv = timed(lambda: lin(x, qkv, qkv_bias), repeats)
    report(f"qkv fused [{qkv.shape[0]} x {HIDDEN}]", s_qkv, flop(*qkv.shape))
    s_gu = timed(lambda: lin(x, gate_up), repeats)
    report(f"gate+up fused [{gate_up.shape[0]} x {HIDDEN}]", s_gu, flop(*gate_up.shape))
    s_o = timed(lambda: lin(x, w["o"]), repeats)
    s_down = timed(lambda: lin(act, w["down"]), repeats)
    fused = s_qkv + s_gu + s_o + s_down
    report("four GEMMs (fused layout), sum", fused, layer_flop)
    print(
        f"  fused saves {(total_sep - fused) * 1e3:.3f} ms per layer per forward ({(1 - fused / total_sep) * 100:.1f} "
        "%)"
    )


def attention(rows: int, width: int, past: int, repeats: int) -> None:
    from torch.nn.attention.bias import causal_lower_right

    dev, dt = "cuda", torch.bfloat16
    sdpa = torch.nn.functional.scaled_dot_product_attention
    q = torch.randn(rows, HEADS, width, HEAD_DIM, device=dev, dtype=dt)
    kv = past + width
    k = torch.randn(rows, HEADS, kv, HEAD_DIM, device=dev, dtype=dt)
    v = torch.randn_like(k)
    prefix_len = torch.randint(past // 2, past + 1, (rows,), device=dev)
    cols = torch.arange(past, device=dev)
    prefix = (cols[None, :] >= (past - prefix_len)[:, None])[:, None, None, :].expand(-1, 1, width, -1)
    causal = torch.ones(width, width, dtype=torch.bool, device=dev).tril_()
    mask = torch.cat([prefix, causal[None, None].expand(rows, 1, -1, -1)], dim=-1)
    flop = 4.0 * rows * HEADS * width * kv * HEAD_DIM
    print(
        f"== attention: {rows} rows, {width} continuation tokens after {past} prefix columns, {HEADS} heads × "
        f"{HEAD_DIM}"
    )
    report(
        "boolean mask (the engine's shared-prefix call)", timed(lambda: sdpa(q, k, v, attn_mask=mask), repeats), flop
    )
    report(
        "lower-right causal, no mask",
        timed(lambda: sdpa(q, k, v, attn_mask=causal_lower_right(width, kv)), repeats),
        flop / 2,
    )
    whole = torch.randn(rows, HEADS, kv, HEAD_DIM, device=dev, dtype=dt)
    report(
        f"whole sequences causal (unshared, length {kv})",
        timed(lambda: sdpa(whole, whole, whole, is_causal=True), repeats),
        4.0 * rows * HEADS * kv * kv * HEAD_DIM / 2,
    )


def lm_head(tokens: int, repeats: int) -> None:
    from resources.fast_engine import lm_head_logits

    dev, dt = "cuda", torch.bfloat16
    h = torch.randn(tokens, HIDDEN, device=dev, dtype=dt)
    w = torch.randn(VOCAB, HIDDEN, device=dev, dtype=dt) * 0.02
    print(f"== LM head, {tokens} rows (one response under 12 scorers)")
    report(
        "float32-out GEMM (lm_head_logits)", timed(lambda: lm_head_logits(h, w), repeats), 2.0 * tokens * VOCAB * HIDDEN
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32, help="continuation rows per packed forward")
    parser.add_argument("--width", type=int, default=511, help="continuation tokens per row")
    parser.add_argument("--past", type=int, default=65, help="prefix columns (the engine rounds past + width to 16)")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    print(f"hardware: {describe()}; torch {torch.__version__}")
    print(f"args: {vars(args)}")
    torch.backends.cuda.matmul.allow_tf32 = False
    projections(args.rows * args.width, args.repeats)
    attention(args.rows, args.width, args.past, args.repeats)
    lm_head(12 * args.width, args.repeats)


if __name__ == "__main__":
    main()
