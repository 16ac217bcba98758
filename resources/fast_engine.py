"""Fast GPU teacher forcing on top of an HFEngine: batched forwards with fused divergences.

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
- One host sync per call, at its end: inputs go to the GPU from pinned memory without waiting,
  the NaN/inf check of every item's logits is deferred until all batches are queued, and
  transformers' packed-sequence check (a sync per forward) is skipped for rows known unpacked,
  so the host builds and launches batch k + 1 while the GPU runs batch k.

Generation: `resources.lean_generation`.

No dagster import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import torch

from persona_assets.measure.divergence import TokenDivergences
from persona_assets.runs.errors import InputError
from persona_assets.measure.scoring_faults import raise_if_non_finite
from resources.fast_divergence import fast_pair_divergences, to_device
from resources.liger_kernels import liger_teacher_forcing
from resources.shared_prefix import continuation_hidden_states, prefix_pool, response_states

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
    with _rows_not_packed():
        hidden = engine._decoder()(input_ids=to_device(input_ids, engine.device), use_cache=False).last_hidden_state
    return [hidden[row, start : start + n] for row, start, n in picks]


@contextmanager
def _rows_not_packed():
    """Within the block, transformers takes no row of a forward for several packed sequences.

    Why: given no attention mask and no cache, transformers' mask preparation looks for packed
    sequences in the position ids (`masking_utils.find_packed_sequence_indices`) and reads the
    answer on the host: one device sync per forward, which lets the GPU run dry. Here every row
    holds one right-padded sequence at positions 0..width − 1, so the answer is known: none, which
    is what that function returns for these rows anyway (after the sync). No-op where
    transformers has no such function.
    """
    try:
        from transformers import masking_utils
    except ImportError:
        masking_utils = None
    find = getattr(masking_utils, "find_packed_sequence_indices", None)
    if find is None:
        yield
        return
    masking_utils.find_packed_sequence_indices = lambda position_ids: None
    try:
        yield
    finally:
        masking_utils.find_packed_sequence_indices = find


@torch.inference_mode()
def batch_response_divergences(
    engine: Any,
    items: Sequence[ScoringItem],
    *,
    max_batch_tokens: int = 16384,
    backend: str = "auto",
    progress: ProgressFn | None = None,
    shared_prefixes: bool = False,
    liger: bool = False,
) -> list[TokenDivergences]:
    """Per-token JS/KL for many responses, several responses per forward.

    `shared_prefixes`: each distinct prompt's K/V is computed once and the packed forwards feed
    only the responses (`shared_prefix_states`). `liger`: the forwards run with Liger's fused
    RMSNorm, RoPE and SwiGLU kernels patched in, and unpatched when the call ends
    (`resources.liger_kernels`; needs liger-kernel and a GPU).

    Returns one TokenDivergences ([P_i, T_i] float64 tensors on the engine's device) per item,
    in input order; equal to `engine.response_logprobs` + `pair_divergences` up to the float
    noise of different batch shapes (tested on CPU; measured on GPU by the benchmark).
    NaN/inf logits raise NonFiniteLogitsError naming the item, scorer and position (checked once
    all batches are queued: one host sync per call). `progress` counts items as their batches are
    queued on the device, not as they finish.
    """
    head = engine.model.get_output_embeddings()
    for _, response_ids, _ in items:
        if not len(response_ids):
            raise InputError("cannot teacher-force an empty response")
    results: list[TokenDivergences | None] = [None] * len(items)
    # No host sync until every batch is queued: the host prepares and launches the next batch
    # while the GPU works on this one. A sync per batch (checking its logits) let the GPU run
    # dry each time, then wait for the host to build inputs and launch ~1,400 kernels.
    # So the finite check is deferred: the [S, T] "row is finite" masks of every item (in packed
    # order) are kept, checked with one sync at the end, and only on failure searched for the
    # culprit. Nothing is returned before that check, so no result of a broken call escapes.
    checked: list[int] = []  # item index of each mask in `finite_rows`
    finite_rows: list[torch.Tensor] = []
    states = shared_prefix_states if shared_prefixes else _whole_sequence_states
    with liger_teacher_forcing(engine.model) if liger else nullcontext():
        for batch in states(engine, items, max_batch_tokens):
            for i, picked in batch:  # picked: [S, T, H], the states that predict item i's tokens
                logits = lm_head_logits(picked, head.weight, getattr(head, "bias", None))
                results[i] = fast_pair_divergences(logits, items[i][2], backend=backend, finite_rows_out=finite_rows)
                checked.append(i)
                del logits, picked
            if progress:
                progress(len(checked), len(items))
    if finite_rows and not bool(torch.stack([rows.all() for rows in finite_rows]).all()):
        for i, rows in zip(checked, finite_rows):
            raise_if_non_finite(rows, item=i)  # the first broken item in packed order, as before
    return [r for r in results if r is not None]


def _whole_sequence_states(
    engine: Any, items: Sequence[ScoringItem], max_batch_tokens: int
) -> Iterator[list[tuple[int, torch.Tensor]]]:
    """Per packed forward of whole sequences (prompt + response), [(item index, states [S, T, H])]."""
    specs = []
    for prompts, response_ids, _ in items:
        response = [int(t) for t in response_ids]
        seqs = [list(p) + response[:-1] for p in prompts]
        specs.append((seqs, len(response), [len(p) - 1 for p in prompts]))
    for batch in pack_items([(len(s), max(len(x) for x in s)) for s, _, _ in specs], max_batch_tokens):
        sequences, picks, owners = [], [], []
        for i in batch:
            seqs, n, starts = specs[i]
            for seq, start in zip(seqs, starts):
                picks.append((len(sequences), start, n))
                sequences.append(seq)
            owners.append((i, len(seqs)))
        states = packed_hidden_states(engine, sequences, picks)
        out, offset = [], 0
        for i, count in owners:
            out.append((i, torch.stack(states[offset : offset + count])))
            offset += count
        del states
        yield out


def shared_prefix_states(
    engine: Any, items: Sequence[ScoringItem], max_batch_tokens: int
) -> Iterator[list[tuple[int, torch.Tensor]]]:
    """As `_whole_sequence_states`, but every distinct prompt of the call runs once (packed prefix
    forwards), and the packed forwards feed only the responses, after their prompts' cached K/V."""
    with _rows_not_packed():
        pool = prefix_pool(engine, [p for prompts, _, _ in items for p in prompts], max_batch_tokens=max_batch_tokens)
    specs = [(pool.rows(prompts), [int(t) for t in response_ids]) for prompts, response_ids, _ in items]
    # Width of a row: its response tokens; each row also attends to its prefix (not counted).
    for batch in pack_items([(len(rows), max(len(response) - 1, 1)) for rows, response in specs], max_batch_tokens):
        rows = [r for i in batch for r in specs[i][0]]
        continuations = [specs[i][1][:-1] for i in batch for _ in specs[i][0]]
        hidden = continuation_hidden_states(engine, pool, rows, continuations)
        out, offset = [], 0
        for i in batch:
            item_rows, response = specs[i]
            out.append((i, response_states(pool, item_rows, hidden[offset : offset + len(item_rows)], len(response))))
            offset += len(item_rows)
        del hidden
        yield out
