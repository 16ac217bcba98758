"""The lean greedy decode loop of the GPU resource (`lean_generate`), on top of an HFEngine.

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
from collections.abc import Callable, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import torch

from resources.hf_engine import Generation

ProgressFn = Callable[[int, int], None]

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
    model: Any,
    buffers: _DecodeBuffers,
    token: torch.Tensor,
    position: torch.Tensor,
    unfinished: torch.Tensor,
    stop: torch.Tensor,
    pad_id: int,
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
            input_ids=input_ids,
            attention_mask=attention,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **cache,
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
                advance = _fixed_width_step(
                    model, buffers, token, positions[:, -1:] + 1, unfinished, stop, engine.pad_id
                )
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
                    input_ids=steps[-1][:, None],
                    attention_mask=full_mask[:, : width + step],
                    position_ids=position,
                    use_cache=True,
                    logits_to_keep=1,
                    **cache,
                )
                steps.append(_greedy_(out.logits[:, -1], unfinished, stop, engine.pad_id))
        generated = torch.stack(steps, dim=1).tolist()
        for row, i in enumerate(batch):
            results[i] = engine._cut_at_stop(generated[row], max_new_tokens)
        if progress:
            progress(min(begin + batch_size, len(order)), len(order))
    return [r for r in results if r is not None]
