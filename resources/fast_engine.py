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
- One host sync per call, at its end: inputs go to the GPU from pinned memory without waiting,
  the NaN/inf check of every item's logits is deferred until all batches are queued, and
  transformers' packed-sequence check (a sync per forward) is skipped for rows known unpacked,
  so the host builds and launches batch k + 1 while the GPU runs batch k.

Generation (`lean_generate`)
- The same batching, left padding, position ids and greedy argmax as `HFEngine.generate`, in a
  plain loop over the model's forward with `logits_to_keep=1`: none of generate()'s per-step
  bookkeeping. Yields the same tokens (tested against generate()).
- `cache_impl="fixed"` (what GpuLLM uses): the prompt is prefilled exactly as generate() does
  it (dynamic cache), then copied into K/V buffers of fixed width (prompt width + max_new_tokens);
  one decode step (forward, argmax, stop bookkeeping) has fixed shapes and touches only
  preallocated tensors, so on CUDA it is captured once as a CUDA graph and replayed for every
  further token: no per-layer Python or kernel-launch cost, no cache concatenation, no host sync
  but one every `sync_every` steps. Attention in that step groups the query heads by their K/V
  head instead of materialising repeat_kv copies of the cache (the eager loop's largest GPU cost).
  On CUDA the whole "fixed" generation runs with SDPA restricted to its memory-efficient kernel
  (`width_invariant_attention`): that kernel gives bit-identical outputs whether or not masked,
  zero key columns follow the real ones, so the fixed-width step yields exactly the tokens of the
  dynamic loop / generate() under the same restriction (measured: 240/240 sequences over 512
  steps, benchmarks/results/gpu_generation_h200.txt). torch's default pick for masked attention
  on H100/H200, cuDNN, rounds differently with the key width (and, in the dynamic loop, builds a
  new plan for every cache width: most of that loop's step time).

No dagster import.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from typing import Any

import torch

from persona_assets.core.divergence import TokenDivergences
from persona_assets.core.errors import InputError
from persona_assets.core.scoring_faults import raise_if_non_finite
from resources.fast_divergence import fast_pair_divergences, to_device
from resources.hf_engine import Generation
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


# ---------------------------------------------------------------------------- generation
GENERATION_CACHES = ("dynamic", "static", "fixed")
# Name under which the fixed-width decode attention is registered with transformers; the model's
# config points at it only while `_fixed_width_decoding` is active.
_FIXED_ATTENTION = "persona_fixed_width_decode"
_active_buffers: _DecodeBuffers | None = None


@contextmanager
def width_invariant_attention(device: Any):
    """On CUDA: SDPA restricted to the memory-efficient kernel (math where it cannot run).

    Why: with that kernel, attention over a fixed-width cache whose unused columns are zero and
    masked is bit-identical to attention over the exact width (see the module docstring); cuDNN's
    kernel is not. No-op on other devices (CPU's kernels passed the same test in float32).
    """
    if not str(device).startswith("cuda"):
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
        yield


class _DecodeBuffers:
    """Every layer's K/V at a fixed width (prompt width + new tokens), the padding mask over that
    width, and the column the next token writes.

    `index` is a device tensor, not a Python int, so a captured graph writes a new column at every
    replay. Columns not yet written are zero (masked scores are -inf, but 0·NaN from uninitialised
    memory would still poison the weighted sum) and masked.
    """

    def __init__(self, prefill_cache: Any, n_layers: int, attention: torch.Tensor, total: int):
        rows, width = attention.shape
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        for layer in range(n_layers):
            for source, target in zip(_cached_kv(prefill_cache, layer), (self.keys, self.values)):
                buffer = source.new_zeros((*source.shape[:2], total, source.shape[3]))
                buffer[:, :, :width] = source
                target.append(buffer)
        self.mask = torch.zeros((rows, 1, 1, total), dtype=torch.bool, device=attention.device)
        self.mask[:, 0, 0, :width] = attention.bool()
        self.index = torch.full((1,), width, dtype=torch.long, device=attention.device)


def _cached_kv(cache: Any, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    if hasattr(cache, "layers"):  # transformers >= 4.56
        return cache.layers[layer].keys, cache.layers[layer].values
    return cache.key_cache[layer], cache.value_cache[layer]


def _fixed_width_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Attention of the one new token against the fixed-width buffers (transformers' attention
    interface: query [B, H, 1, D], the new key/value [B, H_kv, 1, D]; returns [B, 1, H, D]).

    The query heads are grouped by the K/V head they share ([B, H, 1, D] -> [B, H_kv, H/H_kv, D]),
    so SDPA reads each cached K/V head once; transformers' SDPA path instead copies the cache
    H/H_kv times per layer and step (repeat_kv) whenever there is a padding mask.
    """
    buffers = _active_buffers
    keys, values = buffers.keys[module.layer_idx], buffers.values[module.layer_idx]
    keys.index_copy_(2, buffers.index, key)
    values.index_copy_(2, buffers.index, value)
    rows, heads, _, dim = query.shape
    grouped = query.reshape(rows, keys.shape[1], heads // keys.shape[1], dim)
    out = torch.nn.functional.scaled_dot_product_attention(grouped, keys, values, attn_mask=buffers.mask, scale=scaling)
    return out.reshape(rows, heads, 1, dim).transpose(1, 2), None


@contextmanager
def _fixed_width_decoding(model: Any, buffers: _DecodeBuffers):
    """Point the model's attention at `_fixed_width_attention` (and the buffers) for a while."""
    global _active_buffers
    from transformers import AttentionInterface

    AttentionInterface.register(_FIXED_ATTENTION, _fixed_width_attention)
    previous = model.config._attn_implementation
    model.config._attn_implementation = _FIXED_ATTENTION
    _active_buffers = buffers
    try:
        yield
    finally:
        model.config._attn_implementation = previous
        _active_buffers = None


class _CapturedStep:
    """Runs `step` (fixed shapes, in-place updates only): the first `warmup` calls eagerly on a
    side stream (cuBLAS handles, allocator pools; these are real steps), then captures it once as
    a CUDA graph and replays that for every later call."""

    def __init__(self, step: Callable[[], None], warmup: int = 2):
        self.step, self.warmup, self.calls = step, warmup, 0
        self.graph: Any = None

    def __call__(self) -> None:
        if self.graph is not None:
            self.graph.replay()
            return
        if self.calls < self.warmup:
            self.calls += 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self.step()
            torch.cuda.current_stream().wait_stream(side)
            return
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):  # records only: the step runs at the replay below
            self.step()
        self.graph = graph
        graph.replay()


def _greedy_(logits: torch.Tensor, unfinished: torch.Tensor, stop: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Next tokens (pad for finished rows); clears `unfinished` in place for rows that hit a stop id."""
    token = logits.argmax(-1)
    token = torch.where(unfinished, token, torch.full_like(token, pad_id))
    unfinished &= ~torch.isin(token, stop)
    return token


def _fixed_width_step(
    model: Any, buffers: _DecodeBuffers, token: torch.Tensor, position: torch.Tensor,
    unfinished: torch.Tensor, stop: torch.Tensor, pad_id: int,
) -> Callable[[], None]:
    """One greedy step at fixed shapes: reads the last tokens from `token`, writes the next ones
    there. It only updates tensors in place (token, position, unfinished, buffers), so the same
    call can be captured once and replayed."""

    def step() -> None:
        buffers.mask.index_fill_(-1, buffers.index, True)
        out = model(input_ids=token[:, None], position_ids=position, use_cache=False, logits_to_keep=1)
        token.copy_(_greedy_(out.logits[:, -1], unfinished, stop, pad_id))
        position.add_(1)
        buffers.index.add_(1)

    return step


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
    cuda_graph: bool = True,
) -> list[Generation]:
    """Greedy responses like `HFEngine.generate`, through a bare decode loop.

    cache_impl: "dynamic" (transformers' cache, grows by concatenation), "static" (transformers'
    StaticCache, preallocated to prompt width + max_new_tokens) or "fixed" (dynamic-cache prefill,
    then the fixed-width buffers and grouped attention above, under `width_invariant_attention`;
    with `cuda_graph` on a CUDA device the decode step is captured once and replayed).
    """
    if cache_impl not in GENERATION_CACHES:
        raise ValueError(f"cache_impl must be one of {' | '.join(GENERATION_CACHES)}, got {cache_impl!r}")
    if cache_impl != "fixed":
        return _lean_generate(engine, prompts, max_new_tokens, batch_size, progress, sync_every, cache_impl, cuda_graph)
    with width_invariant_attention(engine.device):
        return _lean_generate(engine, prompts, max_new_tokens, batch_size, progress, sync_every, cache_impl, cuda_graph)


def _lean_generate(engine, prompts, max_new_tokens, batch_size, progress, sync_every, cache_impl, cuda_graph):
    from transformers import DynamicCache, StaticCache

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
        unfinished = torch.ones(len(batch), dtype=torch.bool, device=engine.device)
        steps = [_greedy_(out.logits[:, -1], unfinished, stop, engine.pad_id)]
        with ExitStack() as scope:
            if cache_impl == "fixed":
                # Width rounded up to 16 columns: SDPA's memory-efficient kernel wants an aligned
                # mask (it would otherwise pad a copy of it at every call).
                total = -(-(width + max_new_tokens) // 16) * 16
                buffers = _DecodeBuffers(kv, model.config.num_hidden_layers, attention, total)
                del out, kv, cache  # the prefill cache now lives in the buffers
                scope.enter_context(_fixed_width_decoding(model, buffers))
                token = steps[0].clone()  # the step reads the last tokens here and writes the next ones
                advance = _fixed_width_step(model, buffers, token, positions[:, -1:] + 1, unfinished, stop, engine.pad_id)
                if cuda_graph and token.is_cuda:
                    advance = _CapturedStep(advance)
            else:
                # Preallocated mask for the whole run; each step uses a prefix view.
                full_mask = torch.cat([attention, attention.new_ones((len(batch), max_new_tokens))], dim=-1)
                position = positions[:, -1:]
            for step in range(1, max_new_tokens):
                if step % sync_every == 0 and not bool(unfinished.any()):
                    break
                if cache_impl == "fixed":
                    advance()
                    steps.append(token.clone())
                    continue
                position = position + 1
                out = model(
                    input_ids=steps[-1][:, None], attention_mask=full_mask[:, : width + step], position_ids=position,
                    use_cache=True, logits_to_keep=1, **cache,
                )
                steps.append(_greedy_(out.logits[:, -1], unfinished, stop, engine.pad_id))
        generated = torch.stack(steps, dim=1).tolist()
        for row, i in enumerate(batch):
            results[i] = engine._cut_at_stop(generated[row], max_new_tokens)
        if progress:
            progress(min(begin + batch_size, len(order)), len(order))
    return [r for r in results if r is not None]
