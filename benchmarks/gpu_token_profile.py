"""Benchmark: the per-token pass on one GPU against the divergence step's teacher forcing, Qwen2.5-7B shapes.

A random-weight Qwen2.5-7B-shaped model (bf16, `benchmarks/random_qwen2.py`), `--personas` scorers per
response (pair-own pairs), `--responses` responses of `--tokens` tokens after prompts of ~60 tokens. Times, in
one process, each after a warm-up: (1) `fast_engine.batch_response_divergences` (the divergence step's
teacher forcing), (2) `token_profile_pass` with the last layer only (its forward + vocabulary terms), (3)
with the lens at `--layers` + the last layer. Prints the times and (3) as a share of (1).

    python benchmarks/gpu_token_profile.py --responses 48 --tokens 512
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--personas", type=int, default=12)
    parser.add_argument("--responses", type=int, default=48)
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--layers", default="10,15,20,25")
    parser.add_argument("--batch-tokens", type=int, default=16384)
    args = parser.parse_args()
    import torch

    from benchmarks.random_qwen2 import build_random_qwen2, qwen2_config
    from resources.fast_engine import batch_response_divergences
    from resources.token_profile import token_profile_pass
    from tests.gpu.token_engine import TokenEngine

    model = build_random_qwen2(qwen2_config(tiny=False), dtype=torch.bfloat16, device="cuda")
    engine = TokenEngine(model, "cuda", "bfloat16")
    vocab = int(model.config.vocab_size)
    gen = torch.Generator().manual_seed(0)
    items = []
    for r in range(args.responses):
        prompts = [torch.randint(10, vocab, (60 + p % 5,), generator=gen).tolist() for p in range(args.personas)]
        response = torch.randint(10, vocab, (args.tokens,), generator=gen).tolist()
        g = r % args.personas
        items.append((prompts, response, [(g, k) for k in range(args.personas) if k != g]))
    layers = [int(x) for x in args.layers.split(",") if x]

    def timed(label, fn):
        fn(items[: max(1, len(items) // 8)])  # warm-up (kernels, allocator)
        torch.cuda.synchronize()
        started = time.perf_counter()
        fn(items)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        print(f"{label}: {seconds:.2f} s", flush=True)
        return seconds

    print(torch.cuda.get_device_name(0), torch.__version__, flush=True)
    print(f"{args.responses} responses × {args.personas} scorers × {args.tokens} tokens; lens layers {layers}")
    tf = timed(
        "teacher forcing (batch_response_divergences)",
        lambda it: batch_response_divergences(engine, it, max_batch_tokens=args.batch_tokens),
    )
    last = timed(
        "per-token pass, last layer only",
        lambda it: token_profile_pass(engine, it, [], max_batch_tokens=args.batch_tokens),
    )
    lens = timed(
        f"per-token pass, lens at {layers} + last",
        lambda it: token_profile_pass(engine, it, layers, max_batch_tokens=args.batch_tokens),
    )
    print(
        f"pass / teacher forcing: {lens / tf:.2f} (last layer only {last / tf:.2f}); lens layers add "
        f"{(lens - last) / tf:.0%} of the teacher forcing",
        flush=True,
    )


if __name__ == "__main__":
    main()
