"""Fast GPU paths on top of an HFEngine: batched teacher forcing with fused divergences, and a
lean greedy decode loop.

Teacher forcing (`batch_response_divergences`)
- Many responses per forward: every response brings S scoring sequences (its S prompts + the
  response); sequences are sorted by length and packed into right-padded batches of at most
  `max_batch_tokens` (rows × width), which keeps padding small.
- Right padding and a causal model: a real position only attends to earlier positions, which
  are all real, so no attention mask is passed and SDPA runs its plain causal kernel (flash on
  CUDA). Pad positions produce garbage that is never read.
- Hidden states are sliced to the positions that predict response tokens before the LM head;
  the LM head runs one response at a time (memory: S·T·V logits of one response), with float32
  output where the GPU GEMM supports it (`torch.mm(..., out_dtype=float32)`), then the
  divergences come from `fast_pair_divergences` (Triton on CUDA).

Generation (`lean_generate`)
- The same batching, left padding, position ids and greedy argmax as `HFEngine.generate`, in a
  plain loop over the model's forward with a dynamic KV cache and `logits_to_keep=1`: none of
  generate()'s per-step bookkeeping. Yields the same tokens (tested against generate()).

No dagster import.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch

from persona_assets.core.divergence import TokenDivergences
from persona_assets.core.errors import InputError
from persona_assets.core.scoring_faults import raise_if_non_finite
from resources.fast_divergence import fast_pair_divergences
from resources.hf_engine import Generation

ProgressFn = Callable[[int, int], None]
# One response to score: (prompt ids per scorer, response ids, scorer pairs).
ScoringItem = tuple[Sequence[Sequence[int]], Sequence[int], Sequence[tuple[int, int]]]


def pack_items(lengths: Sequence[tuple[int, int]], max_batch_tokens: int) -> list[list[int]]:
    """Group items into batches by length.

    Args:
        lengths: per item, (number of scoring sequences, longest sequence length).
        max_batch_tokens: bound on rows × width of a padded batch (one item always fits alone).

    Returns:
        Lists of item indices; items sorted by length, so each batch holds similar lengths.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i][1])
    batches: list[list[int]] = []
    current: list[int] = []
    rows = width = 0
    for i in order:
        n, w = lengths[i]
        if current and (rows + n) * max(width, w) > max_batch_tokens:
            batches.append(current)
            current, rows, width = [], 0, 0
        current.append(i)
        rows += n
        width = max(width, w)
    if current:
        batches.append(current)
    return batches


def lm_head_logits(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """hidden [..., H] @ weight[V, H]ᵀ, float32 out: on CUDA from the bf16/fp16 GEMM directly."""
    flat = hidden.reshape(-1, hidden.shape[-1])
    if flat.is_cuda and flat.dtype in (torch.bfloat16, torch.float16):
        try:
            out = torch.mm(flat, weight.t(), out_dtype=torch.float32)
        except (TypeError, RuntimeError):
            out = torch.mm(flat, weight.t()).float()
    else:
        out = torch.mm(flat, weight.t()).float()
    if bias is not None:
        out += bias.float()
    return out.reshape(*hidden.shape[:-1], weight.shape[0])


@torch.inference_mode()
def packed_hidden_states(
    engine: Any, sequences: Sequence[Sequence[int]], picks: Sequence[tuple[int, int, int]]
) -> list[torch.Tensor]:
    """One right-padded causal forward over `sequences`; returns hidden[row, start:start+n] per pick."""
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), engine.pad_id, dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
    hidden = engine._decoder()(input_ids=input_ids.to(engine.device), use_cache=False).last_hidden_state
    return [hidden[row, start : start + n] for row, start, n in picks]


@torch.inference_mode()
def batch_response_divergences(
    engine: Any,
    items: Sequence[ScoringItem],
    *,
    max_batch_tokens: int = 16384,
    backend: str = "auto",
    progress: ProgressFn | None = None,
) -> list[TokenDivergences]:
    """Per-token JS/KL for many responses, several responses per forward.

    Returns one TokenDivergences ([P_i, T_i] float64 tensors on the engine's device) per item,
    in input order; equal to `engine.response_logprobs` + `pair_divergences` up to the float
    noise of different batch shapes (tested on CPU; measured on GPU by the benchmark).
    NaN/inf logits raise NonFiniteLogitsError naming the item, scorer and position.
    """
    head = engine.model.get_output_embeddings()
    specs = []
    for prompts, response_ids, _ in items:
        response = [int(t) for t in response_ids]
        if not response:
            raise InputError("cannot teacher-force an empty response")
        seqs = [list(p) + response[:-1] for p in prompts]
        specs.append((seqs, len(response), [len(p) - 1 for p in prompts]))
    batches = pack_items([(len(s), max(len(x) for x in s)) for s, _, _ in specs], max_batch_tokens)
    results: list[TokenDivergences | None] = [None] * len(items)
    done = 0
    for batch in batches:
        sequences, picks, owners = [], [], []
        for i in batch:
            seqs, n, starts = specs[i]
            for seq, start in zip(seqs, starts):
                picks.append((len(sequences), start, n))
                sequences.append(seq)
            owners.append((i, len(seqs)))
        states = packed_hidden_states(engine, sequences, picks)
        offset = 0
        finite_rows: list[torch.Tensor] = []  # per item [S, T]: checked once per batch (one sync)
        for i, count in owners:
            picked = torch.stack(states[offset : offset + count])  # [S, T, H]
            offset += count
            logits = lm_head_logits(picked, head.weight, getattr(head, "bias", None))
            results[i] = fast_pair_divergences(logits, items[i][2], backend=backend, finite_rows_out=finite_rows)
            del logits
        if not bool(torch.stack([rows.all() for rows in finite_rows]).all()):
            for (i, _), rows in zip(owners, finite_rows):
                raise_if_non_finite(rows, item=i)
        done += len(batch)
        if progress:
            progress(done, len(items))
    return [r for r in results if r is not None]


# ---------------------------------------------------------------------------- generation
@torch.inference_mode()
def lean_generate(
    engine: Any,
    prompts: Sequence[list[int]],
    *,
    max_new_tokens: int,
    batch_size: int = 16,
    progress: ProgressFn | None = None,
    sync_every: int = 16,
    cache_impl: str = "dynamic",
) -> list[Generation]:
    """Greedy responses like `HFEngine.generate`, through a bare decode loop.

    cache_impl: "dynamic" (grows by concatenation) or "static" (preallocated to prompt width +
    max_new_tokens, written in place).
    """
    from transformers import DynamicCache, StaticCache

    if cache_impl not in ("dynamic", "static"):
        raise ValueError(f"cache_impl must be dynamic | static, got {cache_impl!r}")

    model = engine.model
    # transformers renamed `past_key_values` to `cache` (the old name still works, deprecated).
    cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    stop = torch.tensor(sorted(engine.stop_ids), dtype=torch.long, device=engine.device)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results: list[Generation | None] = [None] * len(prompts)
    for begin in range(0, len(order), batch_size):
        batch = order[begin : begin + batch_size]
        width = max(len(prompts[i]) for i in batch)
        input_ids = torch.full((len(batch), width), engine.pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            input_ids[row, width - len(prompts[i]) :] = torch.as_tensor(prompts[i])
            attention[row, width - len(prompts[i]) :] = 1
        input_ids, attention = input_ids.to(engine.device), attention.to(engine.device)
        positions = (attention.cumsum(-1) - 1).masked_fill_(attention == 0, 0)
        if cache_impl == "static":
            kv = StaticCache(config=model.config, max_cache_len=width + max_new_tokens)
        else:
            kv = DynamicCache(config=model.config)
        cache = {cache_arg: kv}
        out = model(
            input_ids=input_ids, attention_mask=attention, position_ids=positions,
            use_cache=True, logits_to_keep=1, **cache,
        )
        # Preallocated mask for the whole run; each step uses a prefix view.
        full_mask = torch.cat([attention, attention.new_ones((len(batch), max_new_tokens))], dim=-1)
        position = positions[:, -1:]
        unfinished = torch.ones(len(batch), dtype=torch.bool, device=engine.device)
        steps = []
        for step in range(max_new_tokens):
            token = out.logits[:, -1].argmax(-1)
            token = torch.where(unfinished, token, torch.full_like(token, engine.pad_id))
            steps.append(token)
            unfinished &= ~torch.isin(token, stop)
            if step + 1 == max_new_tokens or ((step + 1) % sync_every == 0 and not bool(unfinished.any())):
                break
            position = position + 1
            out = model(
                input_ids=token[:, None], attention_mask=full_mask[:, : width + step + 1], position_ids=position,
                use_cache=True, logits_to_keep=1, **cache,
            )
        generated = torch.stack(steps, dim=1).tolist()
        for row, i in enumerate(batch):
            results[i] = engine._cut_at_stop(generated[row], max_new_tokens)
        if progress:
            progress(min(begin + batch_size, len(order)), len(order))
    return [r for r in results if r is not None]
