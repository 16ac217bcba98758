"""What bfloat16 does to the study's numbers, split into its two effects, and what float32 scoring costs.

The same model in two precisions, one process, one call:
- (a) scoring precision: the bf16 responses teacher-forced in bf16 and in float32. Two float32
  references: the bf16 weights upcast in place (what every bf16 run re-scores its noise-floor sample
  with, and what `scoring_dtype: float32` does) and, where the checkpoint is not bf16 (the embedded
  GGUF), a float32 load of the weights, which also removes the rounding of the weights themselves;
- (b) generation precision: responses generated in float32 instead of bf16 (other tokens after the
  first flipped near-tie), both sets scored in float32;
- both together (the bf16 run against the float32 run), the in-run probe's bound next to what it
  bounds, and the cost of scoring everything in float32 (`scoring_dtype: float32`).

Pair values are pair-own (each pair: the two generators' responses scored under both personas),
averaged over questions, as `divergence_matrices` reports them.

    # CPU, real weights
    PYTHONPATH=. python benchmarks/precision.py --model embedded --n-questions 4 --max-new-tokens 48
    # GPU, Qwen2.5-7B shapes
    PYTHONPATH=. python benchmarks/precision.py --model random-7b --n-questions 8 --max-new-tokens 256

No dagster import (the GPU machine has none).
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.gpu_phase1 import EngineLLM, Timer, divergence_jobs, load_tokenizer, log, run_generations  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def engines(args, device: str):
    """(bf16 engine, float32 engine, whether the float32 one is the bf16 weights upcast)."""
    import copy

    import torch

    from resources.hf_engine import HFEngine
    from resources.weight_upcast import cast_engine

    if args.model == "random-7b":
        from benchmarks.gpu_phase1 import build_engine

        args.tiny = device == "cpu"
        bf16 = build_engine(args, device, load_tokenizer(args))
        if bf16.dtype != "bfloat16":  # the tiny CPU smoke model is built in float32: make it a bf16 checkpoint
            bf16.model.to(torch.bfloat16)
            bf16.dtype = "bfloat16"
        fp32 = copy.copy(bf16)
        fp32.model = copy.deepcopy(bf16.model)
        fp32.loaded_dtype = "bfloat16"
        cast_engine(fp32, "float32")  # a bf16 checkpoint loaded in float32 is exactly this
        return bf16, fp32, True
    fp32 = HFEngine.load(args.model, device=device, dtype="float32")
    bf16 = HFEngine.load(args.model, device=device, dtype="bfloat16")
    torch.manual_seed(0)
    return bf16, fp32, False


def items_of(jobs) -> list[tuple]:
    """Every job's scorers in one pass (pair-own pairs of N personas need N scorers)."""
    out = []
    for job in jobs:
        scorers = sorted(job.prompts)
        local = {s: k for k, s in enumerate(scorers)}
        out.append(([job.prompts[s] for s in scorers], job.response_ids, [(local[a], local[b]) for a, b in job.pairs]))
    return out


def response_means(results) -> list[dict[str, np.ndarray]]:
    return [
        {name: getattr(r, name).double().mean(dim=1).cpu().numpy() for name in ("js", "kl_ab", "kl_ba")}
        for r in results
    ]


def pair_js(generations: dict, jobs, means: list[dict[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Pair-own JS per (pair, question) [P, Q] and the pair values (mean over questions) [P]."""
    names, n_q = generations["persona_names"], generations["n_questions"]
    n = len(names)
    by_direction = {}
    for response, job, mean in zip(generations["responses"], jobs, means):
        g = names.index(response["persona"])
        for (a, b), value in zip(job.pairs, mean["js"]):
            by_direction[(g, b if a == g else a, response["question_index"])] = value
    i, j = np.triu_indices(n, k=1)
    per_question = np.array(
        [[(by_direction[(a, b, q)] + by_direction[(b, a, q)]) / 2 for q in range(n_q)] for a, b in zip(i, j)]
    )
    return per_question, per_question.mean(axis=1)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    rank = lambda v: np.argsort(np.argsort(v)).astype(float)  # noqa: E731 (no ties in these values)
    return float(np.corrcoef(rank(x), rank(y))[0, 1])


def compare(
    label: str,
    reference: np.ndarray,
    other: np.ndarray,
    *,
    question_se: np.ndarray | None = None,
    band: float | None = None,
) -> None:
    """Pair values against a reference: largest move, rank agreement, and how many orderings flip
    (and, with `band`, how many of those flips the run's rule would have called findings)."""
    diff = np.abs(other - reference)
    rel = diff / np.abs(reference)
    i, j = np.triu_indices(reference.size, k=1)
    flips = np.sign(reference[j] - reference[i]) != np.sign(other[j] - other[i])
    line = (
        f"{label}: pair JS max |Δ| {diff.max():.3g} nats (median {np.median(diff):.3g}), max relative {rel.max():.3g} "
        f"(median {np.median(rel):.3g}); Spearman {spearman(reference, other):.4f}; {int(flips.sum())} of {flips.size} "
        f"pair orderings flip"
    )
    if question_se is not None:
        line += f"; largest |Δ| / question SE {np.max(diff / question_se):.2f}"
    if band is not None:
        outside = int((flips & (np.abs(other[j] - other[i]) >= band)).sum())
        line += f"; flips the run would have called findings (|difference| ≥ {band:.3g}): {outside}"
    log(line)


def response_level(label: str, reference: list, other: list) -> float:
    ref = np.concatenate([m["js"] for m in reference])
    oth = np.concatenate([m["js"] for m in other])
    diff = np.abs(oth - ref)
    log(
        f"{label}: response-mean JS max |Δ| {diff.max():.3g} nats, max relative {np.max(diff / np.abs(ref)):.3g} over "
        f"{ref.size} (response, pair) values"
    )
    return float(diff.max())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default="embedded", help="embedded, a model directory, or random-7b (Qwen2.5-7B shapes)"
    )
    parser.add_argument(
        "--tokenizer", default="", help="for random-7b: tokenizer directory (default: the embedded one)"
    )
    parser.add_argument("--personas", default="")
    parser.add_argument("--n-questions", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--gen-batch", type=int, default=96)
    parser.add_argument("--max-batch-tokens", type=int, default=16384)
    parser.add_argument("--work-dir", default="")
    args = parser.parse_args(argv)
    import tempfile

    import torch
    import transformers

    from benchmarks.hardware import describe
    from persona_assets.inputs.eval_set import build_eval_set
    from resources.floor_rescoring import measure_noise_floor

    device = "cuda" if torch.cuda.is_available() else "cpu"
    log("== hardware and versions")
    log(describe())
    log(
        f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}; "
        f"float32 matmul precision {torch.get_float32_matmul_precision()} (no TF32)"
    )
    log(f"args: {vars(args)}")
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="precision-"))
    evals = build_eval_set(
        REPO / "data" / "personas.yaml",
        REPO / "data" / "questions.yaml",
        persona_subset=[p for p in args.personas.split(",") if p],
        n_questions=args.n_questions,
    )
    timer = Timer(device)  # wall seconds per stage, CUDA synchronised at both ends
    e16, e32, upcast_reference = timer.run("both precisions", lambda: engines(args, device))
    load_s = timer.stages["both precisions"]
    log(
        f"model {args.model}: both precisions ready in {load_s:.1f} s; float32 reference = "
        + (
            "the bf16 weights upcast (a bf16 checkpoint)"
            if upcast_reference
            else "a float32 load (weights not rounded to bf16)"
        )
    )
    llm16 = EngineLLM(e16, max_batch_tokens=args.max_batch_tokens)
    llm32 = EngineLLM(e32, max_batch_tokens=args.max_batch_tokens)
    with torch.inference_mode():
        g16 = timer.run("generation bf16", lambda: run_generations(args, llm16, evals, work / "bf16"))
        g32 = timer.run("generation float32", lambda: run_generations(args, llm32, evals, work / "fp32"))
        jobs16, jobs32 = divergence_jobs(llm16, g16), divergence_jobs(llm32, g32)
        items16, items32 = items_of(jobs16), items_of(jobs32)
        s16_16 = timer.run(
            "scoring bf16", lambda: response_means(llm16.batch_response_divergences(items16, pair_chunk_size=16))
        )
        s16_up = timer.run(
            "scoring float32",
            lambda: response_means(llm16.batch_response_divergences(items16, pair_chunk_size=16, dtype="float32")),
        )
        t_gen16, t_gen32 = timer.stages["generation bf16"], timer.stages["generation float32"]
        t_bf16, t_upcast = timer.stages["scoring bf16"], timer.stages["scoring float32"]
        llm16.scoring_engine("bfloat16")
        s16_32 = (
            s16_up
            if upcast_reference
            else response_means(llm32.batch_response_divergences(items16, pair_chunk_size=16))
        )
        s32_32 = response_means(llm32.batch_response_divergences(items32, pair_chunk_size=16))
        floor = measure_noise_floor(
            llm16,
            jobs16,
            [{"response": j.key} for j in jobs16],
            samples=2,
            max_scorers_per_pass=len(evals.personas),
            pair_chunk_size=16,
        )
    tokens = sum(len(j.response_ids) * len(j.prompts) for j in jobs16)
    log(
        f"\n== workload: {len(evals.personas)} personas × {len(evals.questions)} questions, up to "
        f"{args.max_new_tokens} new tokens; "
        f"{tokens} scored tokens per full scoring"
    )

    log("\n== (b) generation: bf16 vs float32 greedy responses")
    same = [a["token_ids"] == b["token_ids"] for a, b in zip(g16["responses"], g32["responses"])]
    first = [
        next(
            (k for k, (x, y) in enumerate(zip(a["token_ids"], b["token_ids"])) if x != y),
            min(len(a["token_ids"]), len(b["token_ids"])),
        )
        for a, b, s in zip(g16["responses"], g32["responses"], same)
        if not s
    ]
    log(
        f"{sum(same)} of {len(same)} responses identical"
        + (
            f"; first differing token at position min {min(first)}, median {int(np.median(first))}, max {max(first)}"
            if first
            else ""
        )
    )
    log(f"generation wall time: bf16 {t_gen16:.1f} s, float32 {t_gen32:.1f} s")

    per_q, p16_16 = pair_js(g16, jobs16, s16_16)
    question_se = per_q.std(axis=1, ddof=1) / np.sqrt(per_q.shape[1])
    p16_up = pair_js(g16, jobs16, s16_up)[1]
    p16_32 = pair_js(g16, jobs16, s16_32)[1]
    p32_32 = pair_js(g32, jobs32, s32_32)[1]
    log(
        f"pair JS (bf16 run): {p16_16.min():.3g}..{p16_16.max():.3g} nats over {p16_16.size} pairs; "
        "question-bootstrap-like SE "
        f"(std over questions / √Q) median {np.median(question_se):.3g} nats; median gap between neighbouring pair "
        "values "
        f"{np.median(np.diff(np.sort(p16_16))):.3g}"
    )

    log("\n== (a) scoring: the same bf16 responses, bf16 vs float32 teacher forcing")
    bound = response_level("bf16 vs bf16-weights-in-float32 (the in-run probe's comparison)", s16_up, s16_16)
    band = 2 * floor["precision"]["scoring"]["js_abs_nats"]  # the run's rule: twice its measured bound
    compare("bf16 vs bf16-weights-in-float32", p16_up, p16_16, question_se=question_se, band=band)
    if not upcast_reference:
        response_level("bf16 vs float32 load", s16_32, s16_16)
        compare("bf16 vs float32 load (weights not rounded)", p16_32, p16_16, question_se=question_se)
    compare(
        "(b) generation: bf16 vs float32 responses, both scored in float32", p16_32, p32_32, question_se=question_se
    )
    compare("(a)+(b): the bf16 run vs the float32 run", p32_32, p16_16, question_se=question_se)

    scoring = floor["precision"]["scoring"]
    log("\n== the in-run record (noise floor, 2 sampled responses)")
    log(
        f"composition floor {floor['js_abs_nats']:.3g} nats; scoring precision bound {scoring['js_abs_nats']:.3g} nats "
        f"({scoring['seconds']:.1f} s); the largest response-mean move over every response {bound:.3g}, pair move "
        f"{np.abs(p16_up - p16_16).max():.3g}"
    )
    log(
        f"generation precision in the record: applies {floor['precision']['generation']['applies']}, measured "
        f"{floor['precision']['generation']['measured']}"
    )

    log("\n== cost of scoring_dtype: float32 (teacher forcing + divergences of every response)")
    log(
        f"bf16 {t_bf16:.1f} s ({tokens / t_bf16:,.0f} tokens/s); float32 (weights upcast in place, the cast included) "
        f"{t_upcast:.1f} s ({tokens / t_upcast:,.0f} tokens/s): {t_upcast / t_bf16:.1f}× the bf16 time"
    )


if __name__ == "__main__":
    main()
