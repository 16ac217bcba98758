"""Save a random-weight Qwen2.5-7B-shaped model as a model directory, to run the user's path on a GPU.

The weights are random (same cost as the real model, no download); the tokenizer and chat
template are copied from --tokenizer (e.g. the embedded SmolLM2 conversion, whose 49,152 tokens
fit inside the 152,064-row vocabulary). The directory is what `PERSONA_MODEL` points at.

    PYTHONPATH=. python benchmarks/save_random_qwen2.py --tokenizer DIR --out /tmp/qwen7b [--tiny]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import torch
    from transformers import AutoTokenizer

    from benchmarks.random_qwen2 import build_random_qwen2, qwen2_config

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--tiny", action="store_true", help="a tiny model of the same architecture (CPU smoke test)")
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    start = time.perf_counter()
    config = qwen2_config(tiny=args.tiny, tiny_vocab=len(tokenizer))
    config.bos_token_id, config.eos_token_id, config.pad_token_id = (
        tokenizer.bos_token_id,
        tokenizer.eos_token_id,
        tokenizer.pad_token_id,
    )
    model = build_random_qwen2(config, dtype=torch.float32 if args.tiny else torch.bfloat16, device=device)
    built = time.perf_counter() - start
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    size = sum(p.stat().st_size for p in Path(args.out).glob("*.safetensors")) / 2**30
    print(
        f"built in {built:.1f} s on {device}, saved {size:.1f} GiB to {args.out} in "
        f"{time.perf_counter() - start - built:.1f} s"
    )


if __name__ == "__main__":
    main()
