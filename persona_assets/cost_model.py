"""Cost model: wall time and GPU memory of a study from measured per-token costs.

    python -m persona_assets.cost_model --personas 111 --questions 20 --tokens 512 --model-params 7.6e9 --gpus 1
    python -m persona_assets.cost_model --table            # the README's N × GPU table

What it counts (pair-own averaging, the method):
- generation: N·Q greedy responses in batches of `--gen-batch`, each batch prefill + T decode steps,
  on one GPU (the `generations` step is not sharded);
- teacher forcing: per response, N − 1 pairs in passes of at most `--max-scorers` sequences (the
  generator is re-scored once per pass): (N − 1) + ceil((N − 1)/(m − 1)) sequences of
  prompt + T tokens, forward at the measured tokens/s, plus the measured LM head + divergence
  cost per scored (sequence, position); split over G GPUs (shards of equal response counts);
- memory: bf16 weights + the teacher-forcing peak (fp32 logits of one pass: m·T·V·4 bytes,
  scaled by the measured peak/logits ratio) or the generation peak (KV cache of one batch),
  whichever is larger;
- model loading is not measured here and is left out (seconds to a minute per step).

Per-token costs come from benchmark files under benchmarks/results/ (see PROFILES); other model
sizes are scaled linearly in parameters (forward, decode) and in vocabulary × √parameters (LM head,
hidden size ~ √parameters), which is a
first-order estimate, not a measurement. No dagster or torch import.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, replace

GIB = 2**30


@dataclass(frozen=True)
class Profile:
    """Measured costs on one GPU for a Qwen2.5-7B-shaped model (7.62e9 params, vocab 152,064, bf16)."""

    name: str
    source: str
    memory_gib: float
    forward_tokens_per_s: float  # decoder forward, packed teacher-forcing batches
    head_div_us_per_scored_token: float  # LM head (fp32 out) + log-sum-exp + pair kernel, per (sequence, position)
    gen_prefill_s: float  # prefill + first step of a batch of gen_batch prompts
    gen_ms_per_step: float  # decode step at that batch
    gen_batch: int
    tf_peak_over_logits: float  # measured teacher-forcing peak beyond weights / one pass's fp32 logits
    model_params: float = 7.62e9
    vocab: int = 152_064


H200_EAGER = Profile(
    name="NVIDIA H200",
    source="benchmarks/results/gpu_teacher_forcing_h200.txt",
    memory_gib=139.0,
    forward_tokens_per_s=156_576 / 4.027,
    head_div_us_per_scored_token=30.5e3 / 5723.5,
    gen_prefill_s=0.19,
    gen_ms_per_step=14.43,
    gen_batch=240,
    tf_peak_over_logits=3.69 / 3.48,
)

PROFILES = {
    # benchmarks/results/gpu_teacher_forcing_h200.txt: decoder forward alone 4.027 s for 156,576
    # real tokens; LM head + divergences 30.5 ms per response of 5,723.5 scored (sequence,
    # position)s; peak 3.69 GiB beyond weights with 12 scorers × ≤ 512 positions (fp32 logits
    # 3.48 GiB). Generation: benchmarks/results/gpu_generation_h200.txt, the fixed-width decode
    # step replayed as a CUDA graph at batch 240: 14.43 ms per further step; 7.56 s for 512 steps,
    # so prefill, warm-up and capture take 7.56 − 511 × 0.01443 ≈ 0.19 s.
    "h200": H200_EAGER,
    # The H200 with GpuLLM's defaults since 2026-12-02 (shared prefixes, Liger's kernels), fitted to the N = 111
    # slice through the project's scoring path (benchmarks/results/gpu_scale_h200_shared_liger.txt: 48.09 s for
    # 2,078,884 forward tokens, prompts counted in every sequence as here, and 1,826,520 scored tokens): the LM
    # head + divergences keep the eager profile's 5.33 us per scored token (their kernels did not change), the
    # forward gets the rest, 48.09 - 9.73 s. Shared prefixes compute each prompt once per call, so this
    # forward rate is an effective one for prompts of the slice's length (~70 tokens). Generation as "h200".
    "h200-shared-liger": replace(
        H200_EAGER,
        name="NVIDIA H200 (shared prefixes + Liger)",
        source="benchmarks/results/gpu_scale_h200_shared_liger.txt",
        forward_tokens_per_s=2_078_884 / (48.09 - 1_826_520 * H200_EAGER.head_div_us_per_scored_token * 1e-6),
    ),
    # benchmarks/results/gpu_teacher_forcing_h100.txt (same script and workload): decoder forward
    # alone 4.230 s; LM head + divergences 34.5 ms per response; peak 3.69 GiB beyond weights.
    # Generation NOT measured on an H100 with the CUDA-graph decode: the H200 figures scaled by
    # the H100/H200 ratio the eager decode loop showed in the same script (33.23 / 30.13 ms per
    # step, 673.7 / 627.4 ms prefill).
    "h100": Profile(
        name="NVIDIA H100 80GB HBM3",
        source="benchmarks/results/gpu_teacher_forcing_h100.txt",
        memory_gib=79.6,
        forward_tokens_per_s=156_576 / 4.230,
        head_div_us_per_scored_token=34.5e3 / 5723.5,
        gen_prefill_s=0.19 * 673.7 / 627.4,
        gen_ms_per_step=14.43 * 33.23 / 30.13,
        gen_batch=240,
        tf_peak_over_logits=3.69 / 3.48,
    ),
}


@dataclass(frozen=True)
class Workload:
    personas: int
    questions: int
    tokens: int  # response length (tokens teacher-forced per sequence after the prompt)
    model_params: float = 7.62e9
    gpus: int = 1
    prompt_tokens: int = 60
    max_scorers: int = 12
    vocab: int = 152_064
    kv_bytes_per_token: int = 28 * 2 * 4 * 128 * 2  # Qwen2.5-7B: layers × (K, V) × kv heads × head dim × bf16
    sources: int = 0  # personas whose responses are scored (a slice); 0 = all


@dataclass(frozen=True)
class Prediction:
    responses: int
    sequences: int
    forward_tokens: float
    generation_s: float
    forward_s: float
    head_div_s: float
    teacher_forcing_s: float  # per GPU, the slowest shard
    total_s: float
    weights_gib: float
    tf_peak_gib: float
    gen_peak_gib: float
    peak_gib: float
    fits: bool
    bound: str
    cache_mib: float


def predict(w: Workload, p: Profile) -> Prediction:
    if w.personas < 2 or w.questions < 1 or w.tokens < 1 or w.gpus < 1 or w.max_scorers < 2:
        raise ValueError("need ≥ 2 personas, ≥ 1 question, ≥ 1 token, ≥ 1 GPU, max_scorers ≥ 2")
    size = w.model_params / p.model_params
    responses = (w.sources or w.personas) * w.questions
    others = w.personas - 1
    per_response = others + math.ceil(others / (w.max_scorers - 1))
    sequences = responses * per_response
    forward_tokens = sequences * (w.prompt_tokens + w.tokens)
    forward_s = forward_tokens / (p.forward_tokens_per_s / size)
    head_div_s = sequences * w.tokens * p.head_div_us_per_scored_token * 1e-6 * (w.vocab / p.vocab) * size**0.5
    shard_responses = math.ceil(responses / w.gpus)
    teacher_forcing_s = (forward_s + head_div_s) * shard_responses / responses
    batches = math.ceil(responses / p.gen_batch)
    generation_s = batches * (p.gen_prefill_s + p.gen_ms_per_step * 1e-3 * (w.tokens - 1)) * size
    total = generation_s + teacher_forcing_s
    weights = 2 * w.model_params / GIB
    logits = min(w.max_scorers, per_response) * w.tokens * w.vocab * 4 / GIB
    tf_peak = weights + logits * p.tf_peak_over_logits
    gen_peak = weights + min(p.gen_batch, responses) * (w.prompt_tokens + w.tokens) * w.kv_bytes_per_token * size / GIB
    peak = max(tf_peak, gen_peak)
    fits = peak <= 0.95 * p.memory_gib
    parts = {
        "teacher-forcing forward (GPU compute)": forward_s * shard_responses / responses,
        "LM head + divergences (GPU)": head_div_s * shard_responses / responses,
        "generation (one GPU, decode)": generation_s,
    }
    name, seconds = max(parts.items(), key=lambda kv: kv[1])
    bound = f"{name}, {seconds / total:.0%} of the time"
    if not fits:
        bound = f"GPU memory: {peak:.0f} GiB > {p.memory_gib:.0f} GiB (lower max_scorers / generation batch)"
    cache_mib = responses * (others * 110 + 200) / 2**20  # JSON entry: ~110 bytes per pair
    return Prediction(
        responses,
        sequences,
        forward_tokens,
        generation_s,
        forward_s,
        head_div_s,
        teacher_forcing_s,
        total,
        weights,
        tf_peak,
        gen_peak,
        peak,
        fits,
        bound,
        cache_mib,
    )


def human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def report(w: Workload, p: Profile) -> str:
    r = predict(w, p)
    lines = [
        f"workload: {w.personas} personas x {w.questions} questions, responses of {w.tokens} tokens, prompts "
        f"~{w.prompt_tokens} tokens, "
        f"{w.model_params:.2e} params, {w.gpus} GPU(s) ({p.name}), <= {w.max_scorers} scorers per pass",
        f"per-token costs from {p.source}",
        f"responses {r.responses:,}; teacher-forced sequences {r.sequences:,} ({r.sequences / r.responses:.0f} per "
        "response); "
        f"forward tokens {r.forward_tokens:,.0f}",
        f"generation (one GPU):            {human(r.generation_s):>9}",
        f"teacher-forcing forward (total): {human(r.forward_s):>9}",
        f"LM head + divergences (total):   {human(r.head_div_s):>9}",
        f"teacher forcing per GPU:         {human(r.teacher_forcing_s):>9}",
        f"predicted wall time:             {human(r.total_s):>9}  (model loading not included)",
        f"GPU memory: weights {r.weights_gib:.1f} GiB, teacher-forcing peak {r.tf_peak_gib:.1f} GiB, "
        f"generation peak {r.gen_peak_gib:.1f} GiB of {p.memory_gib:.0f} GiB -> {'fits' if r.fits else 'DOES NOT FIT'}",
        f"divergence cache on disk: ~{r.cache_mib:,.0f} MiB",
        f"bound by: {r.bound}",
    ]
    return "\n".join(lines)


def table(base: Workload, p: Profile, personas=(12, 111, 1000), gpus=(1, 2, 8)) -> str:
    rows = [
        "| N personas | responses | sequences | "
        + " | ".join(f"{g} GPU{'s' if g > 1 else ''}" for g in gpus)
        + " | peak GPU memory | bound (1 GPU) |",
        "|---:|---:|---:|" + "---:|" * len(gpus) + "---:|---|",
    ]
    for n in personas:
        preds = [predict(Workload(**{**base.__dict__, "personas": n, "gpus": g}), p) for g in gpus]
        rows.append(
            f"| {n:,} | {preds[0].responses:,} | {preds[0].sequences:,} | "
            + " | ".join(human(r.total_s) for r in preds)
            + f" | {preds[0].peak_gib:.0f} GiB | {preds[0].bound} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--personas", type=int, default=111)
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=512, help="response length in tokens")
    parser.add_argument("--model-params", type=float, default=7.62e9)
    parser.add_argument("--gpus", type=int, default=1)
    parser.add_argument(
        "--sources", type=int, default=0, help="score only these many personas' responses (a slice); 0 = all"
    )
    parser.add_argument("--prompt-tokens", type=int, default=60)
    parser.add_argument("--max-scorers", type=int, default=12, help="max_scorers_per_pass")
    parser.add_argument("--vocab", type=int, default=152_064)
    parser.add_argument("--gpu", choices=sorted(PROFILES), default="h100", help="measured profile")
    parser.add_argument("--table", action="store_true", help="N = 12, 111, 1000 on 1, 2, 8 GPUs (markdown)")
    args = parser.parse_args(argv)
    profile = PROFILES[args.gpu]
    workload = Workload(
        personas=args.personas,
        questions=args.questions,
        tokens=args.tokens,
        model_params=args.model_params,
        gpus=args.gpus,
        prompt_tokens=args.prompt_tokens,
        max_scorers=args.max_scorers,
        vocab=args.vocab,
        sources=args.sources,
    )
    if args.table:
        print(
            f"{profile.name}, {args.questions} questions, {args.tokens}-token responses, {args.model_params:.2g} "
            "params "
            f"(per-token costs: {profile.source})\n"
        )
        print(table(workload, profile))
    else:
        print(report(workload, profile))


if __name__ == "__main__":
    main()
