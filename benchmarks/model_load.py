"""Benchmark: where the model load's seconds go, against a plain `from_pretrained` of the same directory.

Each variant runs in a fresh Python process (so CUDA initialisation and imports are counted
where a run pays them), on the same page-cached local directory:
  plain      `AutoModelForCausalLM.from_pretrained(dir, dtype=bfloat16, device_map="cuda")`
  project    `resources.model_loading.load_model_and_tokenizer` (what the GPU resource calls)
Each prints its phases: imports, CUDA initialisation, the tokenizer/config checks, the weights.
A first untimed plain load warms the page cache. `--profile` adds cProfile's top entries of the
project's load.

    PYTHONPATH=. python benchmarks/model_load.py --model DIR [--rounds 2] [--profile]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import hardware  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _phase(name: str, start: float, phases: dict[str, float]) -> float:
    now = time.perf_counter()
    phases[name] = now - start
    return now


def _child(variant: str, model: str, profile: bool) -> None:
    phases: dict[str, float] = {}
    start = time.perf_counter()
    import torch

    t = _phase("import torch", start, phases)
    torch.zeros(1, device="cuda").sum().item()
    t = _phase("CUDA initialisation", t, phases)
    from transformers import AutoModelForCausalLM

    t = _phase("import transformers", t, phases)
    if variant == "plain":
        model_obj = AutoModelForCausalLM.from_pretrained(model, dtype=torch.bfloat16, device_map="cuda")
        torch.cuda.synchronize()
        _phase("from_pretrained", t, phases)
    else:
        from resources.model_loading import load_model_and_tokenizer, resolve_model_source

        source = resolve_model_source(model)
        t = _phase("resolve_model_source", t, phases)
        if profile:
            import cProfile
            import io
            import pstats

            profiler = cProfile.Profile()
            profiler.enable()
        model_obj, _ = load_model_and_tokenizer(source, device="cuda:0", dtype="bfloat16")
        torch.cuda.synchronize()
        _phase("load_model_and_tokenizer", t, phases)
        if profile:
            profiler.disable()
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(30)
            print(text.getvalue()[-6000:], file=sys.stderr)
    phases["total"] = time.perf_counter() - start
    del model_obj
    print(json.dumps(phases))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--child", choices=["plain", "project"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.model, args.profile)
        return
    print(f"hardware: {hardware.describe()}", flush=True)
    print(f"model: {args.model}", flush=True)

    def run(variant: str, profile: bool = False) -> dict[str, float]:
        command = [sys.executable, __file__, "--child", variant, "--model", args.model]
        out = subprocess.run(command + (["--profile"] if profile else []), cwd=REPO, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"{variant} failed:\n{out.stderr[-4000:]}")
        if profile:
            print(out.stderr[-6000:], flush=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    run("plain")  # warms the page cache
    for round_number in range(1, args.rounds + 1):
        for variant in ("plain", "project"):
            phases = run(variant)
            line = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in phases.items())
            print(f"round {round_number} {variant:8s} {line}", flush=True)
    if args.profile:
        run("project", profile=True)


if __name__ == "__main__":
    main()
