"""Teacher forcing after shared prefixes: each scoring prompt's K/V is computed once per call.

Every response to question q is scored under persona j after the same tokens: j's chat prompt for
q (system prompt + question + generation prompt). The unshared path recomputes those tokens for
every response; here they run once (`prefix_pool`), and each scoring row then feeds only its
response tokens (`continuation_hidden_states`), attending to the prefix's cached K/V.

Exact up to float rounding: a causal model's K/V at the prefix positions do not depend on what
follows them, so a response token sees the same keys and values either way; only the kernels'
blocking differs (the continuation runs against a cache, under an explicit mask). Tested against
the unshared path on CPU in float32; the GPU benchmark reports the largest difference.

Layout
- `PrefixPool` keeps every prefix of the call right-aligned in one [n, H_kv, P, D] tensor per layer
  (P = the longest prefix; the shorter ones' unused left columns hold finite filler and are
  masked), so one `index_select` per layer builds a forward's past K/V, whatever its rows.
- A continuation forward's rows may use different prefixes: row b's query at response position t
  attends to its prefix's real columns and to its own continuation positions ≤ t (a 4D boolean
  mask, passed to transformers as is; so no mask preparation, and no host sync, per forward).
  Positions continue the prefix: len(prefix_b) + t.
- No host sync: index tensors reach the device through `to_device` (pinned, non-blocking), so the
  GPU path keeps launching forward k + 1 while forward k runs.
- The hidden state that predicts the first response token is the prefix's last one: kept in the
  pool (`last_hidden`), so a one-token response needs no continuation forward at all.
- A prompt computed alone (`max_batch_tokens` ≤ 0) has values that depend on nothing else of the
  call, so they can be kept for later calls (`PrefixMemo`): the noise floor's re-scoring then
  reuses the prompts the run computed (24 prompt forwards of configs/demo.yaml's divergence step)
  and gets the same bits.

No dagster import.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from resources.fast_divergence import to_device


@dataclass(frozen=True)
class PrefixPool:
    """The K/V and last hidden state of every distinct prompt of a call."""

    index: dict[tuple[int, ...], int]  # prompt ids → row in the tensors below
    lengths: list[int]
    keys: list[torch.Tensor]  # per layer [n, H_kv, P, D], prefix k in columns P − lengths[k] .. P − 1
    values: list[torch.Tensor]
    last_hidden: torch.Tensor  # [n, H]: the state at each prompt's last token (predicts response token 0)

    @property
    def width(self) -> int:
        return int(self.keys[0].shape[2])

    def rows(self, prompts: Sequence[Sequence[int]]) -> list[int]:
        return [self.index[tuple(int(t) for t in p)] for p in prompts]


@dataclass(frozen=True)
class _Prefix:
    """One prompt's K/V (per layer [H_kv, length, D]) and its last hidden state [H]."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    last_hidden: torch.Tensor

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values, self.last_hidden))


class PrefixMemo:
    """Prompts computed alone, kept across calls up to `max_bytes` (least recently used dropped first).

    Keyed by the prompt ids and the weights' dtype and device, so an in-place cast of the weights
    (the precision probe's float32 re-scoring) never reads a prefix of the other precision. Only
    for prompts run alone: those values do not depend on the call they were computed in.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple, _Prefix] = OrderedDict()
        self._bytes = 0

    @staticmethod
    def key(engine: Any, prompt: tuple[int, ...]) -> tuple:
        weight = next(engine.model.parameters())
        return (prompt, weight.dtype, str(weight.device))

    def get(self, key: tuple) -> _Prefix | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: tuple, entry: _Prefix) -> None:
        if key in self._entries or entry.nbytes > self.max_bytes:
            return
        self._entries[key] = entry
        self._bytes += entry.nbytes
        while self._bytes > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self._bytes -= dropped.nbytes

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes


def cache_argument(module: Any) -> str:
    """The forward's name for the K/V cache (transformers renamed `past_key_values` to `cache`)."""
    return "cache" if "cache" in inspect.signature(type(module).forward).parameters else "past_key_values"


def _cached_kv(cache: Any, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    if hasattr(cache, "layers"):  # transformers >= 4.56
        return cache.layers[layer].keys, cache.layers[layer].values
    return cache.key_cache[layer], cache.value_cache[layer]


def _new_cache(config: Any, data: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> Any:
    from transformers import DynamicCache

    if data is not None:
        return DynamicCache(ddp_cache_data=data)  # per layer (keys, values)
    try:
        return DynamicCache(config=config)
    except TypeError:  # older transformers
        return DynamicCache()


def _batches(lengths: Sequence[int], max_batch_tokens: int) -> list[list[int]]:
    """Indices grouped by length, rows × width ≤ max_batch_tokens (≤ 0: one per batch)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * lengths[i] <= max_batch_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


@torch.inference_mode()
def prefix_pool(
    engine: Any, prompts: Sequence[Sequence[int]], *, max_batch_tokens: int = 0, memo: PrefixMemo | None = None
) -> PrefixPool:
    """Run every distinct prompt once (right-padded causal batches, rows × width ≤ max_batch_tokens;
    ≤ 0 runs each prompt alone, so a prefix's values never depend on the others of the call).

    `memo` (prompts run alone only): prompts it holds are not run again, those run are added to it.
    """
    unique = list(dict.fromkeys(tuple(int(t) for t in p) for p in prompts))
    if not unique or min(len(p) for p in unique) == 0:
        raise ValueError("shared prefixes need at least one non-empty prompt")
    if memo is None:
        return _computed_pool(engine, unique, max_batch_tokens)
    if max_batch_tokens > 0:
        raise ValueError("a prefix memo holds prompts run alone: max_batch_tokens must be ≤ 0")
    keys = [memo.key(engine, p) for p in unique]
    stored = [memo.get(key) for key in keys]
    missing = [k for k, entry in enumerate(stored) if entry is None]
    if missing:
        computed = _computed_pool(engine, [unique[k] for k in missing], 0)
        for row, k in enumerate(missing):
            stored[k] = _prefix_of(computed, row)
            memo.put(keys[k], stored[k])
        if len(missing) == len(unique):
            return computed
    return _assembled_pool(unique, stored)


def _prefix_of(pool: PrefixPool, k: int) -> _Prefix:
    """Prompt k of the pool on its own (copies: the pool's tensors are not kept alive)."""
    n = pool.lengths[k]
    cut = lambda states: states[k, :, pool.width - n :].clone()  # noqa: E731
    return _Prefix([cut(t) for t in pool.keys], [cut(t) for t in pool.values], pool.last_hidden[k].clone())


def _assembled_pool(unique: list[tuple[int, ...]], prefixes: list[_Prefix]) -> PrefixPool:
    """The pool `_computed_pool` builds from these prompts, from their stored prefixes (same layout:
    right-aligned, the columns left of a prefix repeat its column 0)."""
    lengths = [len(p) for p in unique]
    width = max(lengths)

    def layer(parts: list[torch.Tensor]) -> torch.Tensor:
        out = parts[0].new_empty((len(parts), parts[0].shape[0], width, parts[0].shape[2]))
        for k, part in enumerate(parts):
            n = part.shape[1]
            out[k, :, width - n :] = part
            if n < width:
                out[k, :, : width - n] = part[:, :1]
        return out

    n_layers = len(prefixes[0].keys)
    keys = [layer([p.keys[i] for p in prefixes]) for i in range(n_layers)]
    values = [layer([p.values[i] for p in prefixes]) for i in range(n_layers)]
    last_hidden = torch.stack([p.last_hidden for p in prefixes])
    return PrefixPool(dict(zip(unique, range(len(unique)))), lengths, keys, values, last_hidden)


def _computed_pool(engine: Any, unique: list[tuple[int, ...]], max_batch_tokens: int) -> PrefixPool:
    """`prefix_pool` of distinct, non-empty prompts, all computed here."""
    lengths = [len(p) for p in unique]
    width = max(lengths)
    decoder = engine._decoder()
    n_layers = int(engine.model.config.num_hidden_layers)
    keys: list[torch.Tensor | None] = [None] * n_layers
    values: list[torch.Tensor | None] = [None] * n_layers
    last_hidden: torch.Tensor | None = None
    for batch in _batches(lengths, max_batch_tokens):
        batch_width = max(lengths[i] for i in batch)
        input_ids = torch.full((len(batch), batch_width), engine.pad_id, dtype=torch.long)
        for row, i in enumerate(batch):
            input_ids[row, : lengths[i]] = torch.as_tensor(unique[i], dtype=torch.long)
        cache = _new_cache(engine.model.config)
        out = decoder(input_ids=to_device(input_ids, engine.device), use_cache=True, **{cache_argument(decoder): cache})
        hidden = out.last_hidden_state
        rows = to_device(torch.as_tensor(batch), hidden.device)
        ends = to_device(torch.as_tensor([lengths[i] for i in batch]), hidden.device)
        if last_hidden is None:
            last_hidden = hidden.new_empty((len(unique), hidden.shape[-1]))
        last_hidden[rows] = hidden[torch.arange(len(batch), device=hidden.device), ends - 1]
        # Right-align each row in the pool's width: column c of the pool takes the batch's column
        # c − (width − len); columns left of the prefix repeat column 0 (finite, always masked).
        shift = (torch.arange(width, device=hidden.device)[None, :] - (width - ends)[:, None]).clamp_(min=0)
        for layer in range(n_layers):
            for source, target in zip(_cached_kv(cache, layer), (keys, values)):
                if target[layer] is None:
                    target[layer] = source.new_empty((len(unique), source.shape[1], width, source.shape[3]))
                if batch_width < width:  # gather reads up to column width − 1 of the padded source
                    source = torch.nn.functional.pad(source, (0, 0, 0, width - batch_width))
                index = shift[:, None, :, None].expand(-1, source.shape[1], -1, source.shape[3])
                target[layer][rows] = source.gather(2, index)
        del out, cache
    return PrefixPool(dict(zip(unique, range(len(unique)))), lengths, keys, values, last_hidden)  # type: ignore[arg-type]


def _attention_mask(
    pool: PrefixPool, rows: list[int], past: int, width: int, device: Any, attn_implementation: str, dtype: torch.dtype
) -> torch.Tensor:
    """[B, 1, width, past + width]: row b sees its prefix's real columns, then its own positions ≤ t."""
    lengths = to_device(torch.as_tensor([pool.lengths[r] for r in rows]), device)
    columns = torch.arange(past, device=device)
    prefix = (columns[None, :] >= (past - lengths)[:, None])[:, None, None, :].expand(-1, 1, width, -1)
    causal = torch.ones((width, width), dtype=torch.bool, device=device).tril_()
    mask = torch.cat([prefix, causal[None, None].expand(len(rows), 1, -1, -1)], dim=-1)
    if attn_implementation == "sdpa":
        return mask  # boolean: True = attend
    # eager-style attention adds the mask to the scores
    return torch.zeros(mask.shape, dtype=dtype, device=device).masked_fill_(~mask, torch.finfo(dtype).min)


@torch.inference_mode()
def continuation_hidden_states(
    engine: Any, pool: PrefixPool, rows: Sequence[int], continuations: Sequence[Sequence[int]]
) -> torch.Tensor:
    """Hidden states [B, W, H] of continuation b fed after prefix `rows[b]` of the pool (right-padded
    to the longest continuation W; positions past a row's length are garbage, never to be read)."""
    rows = list(rows)
    width = max(len(c) for c in continuations)
    hidden_size = pool.last_hidden.shape[-1]
    if width == 0:
        return pool.last_hidden.new_empty((len(rows), 0, hidden_size))
    device = pool.last_hidden.device
    needed = max(pool.lengths[r] for r in rows)
    # Past width rounded so past + width is a multiple of 16: SDPA's memory-efficient CUDA kernel
    # wants an aligned mask (otherwise it pads a copy at every call). It depends on these rows only,
    # never on the other prompts of the pool, so a response's values do not depend on the call.
    past = -(-(needed + width) // 16) * 16 - width
    input_ids = torch.full((len(rows), width), engine.pad_id, dtype=torch.long)
    for b, continuation in enumerate(continuations):
        input_ids[b, : len(continuation)] = torch.as_tensor(list(continuation), dtype=torch.long)
    select = to_device(torch.as_tensor(rows), device)
    lengths = torch.as_tensor([pool.lengths[r] for r in rows])
    positions = to_device(lengths[:, None] + torch.arange(width)[None, :], device)
    start, extra = max(pool.width - past, 0), max(past - pool.width, 0)

    def rows_of(states: torch.Tensor) -> torch.Tensor:  # [B, H_kv, past, D], extra columns zero (masked)
        picked = states[:, :, start:].index_select(0, select)
        return torch.nn.functional.pad(picked, (0, 0, extra, 0)) if extra else picked

    cache = _new_cache(engine.model.config, [(rows_of(k), rows_of(v)) for k, v in zip(pool.keys, pool.values)])
    config = engine.model.config
    mask = _attention_mask(pool, rows, past, width, device, config._attn_implementation, pool.last_hidden.dtype)
    decoder = engine._decoder()
    out = decoder(
        input_ids=to_device(input_ids, device),
        attention_mask=mask,
        position_ids=positions,
        use_cache=True,
        **{cache_argument(decoder): cache},
    )
    return out.last_hidden_state


def response_states(pool: PrefixPool, rows: Sequence[int], continuation: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """[S, n_tokens, H]: the states that predict a response's tokens under S prefixes.

    `continuation` [S, ≥ n_tokens − 1, H] holds the response's continuation states (one row per
    prefix); position 0 is each prefix's last state.
    """
    first = pool.last_hidden[to_device(torch.as_tensor(list(rows)), pool.last_hidden.device)][:, None]
    return torch.cat([first, continuation[:, : n_tokens - 1]], dim=1)
