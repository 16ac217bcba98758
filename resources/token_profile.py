"""One per-token pass: logit lens at chosen layers, per-token output divergences, vocabulary KL terms.

For each scoring item (a response, its scorers' prompts, its scorer pairs: the items the divergence
step teacher-forces) the response is teacher-forced under every scorer's prompt, whole sequences in
right-padded packs (`fast_engine.pack_items`), and at the positions that predict the response's tokens:

- **lens layers** (1-based decoder layers; the model's last layer is always added): the residual
  stream after layer L, through the model's final norm and its unembedding (the LM head), gives a
  next-token distribution per scorer; JS and both KLs per pair and position come from the same math
  as the divergence step (`pair_divergences` in float64 on the CPU, `fast_pair_divergences` on CUDA).
  At the last layer the model has applied its final norm already (transformers' last hidden state),
  so the lens there *is* the model's output: its JS is the output JS, which the asset checks against
  the divergence step's own numbers (a separate computation).
- **vocabulary terms** of the output distributions: for each pair (a, b) the vector over the
  vocabulary Σ_t P_a(v)·(log P_a(v) − log P_b(v)) (and the same for KL(b‖a)), whose sum is Σ_t KL;
  only its top k entries leave the device, with the exact sum of the whole vector.

Hidden states are taken by forward hooks on the chosen decoder layers only (not
`output_hidden_states`, which keeps every layer), sliced to the response positions before the norm
and LM head, so the projection runs only where it is used. No dagster import.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from persona_assets.measure.divergence import TokenDivergences, pair_divergences
from persona_assets.measure.scoring_faults import raise_if_non_finite
from persona_assets.runs.errors import InputError
from resources.fast_divergence import fast_pair_divergences, to_device
from resources.fast_engine import lm_head_logits, pack_items
from resources.shared_prefix import continuation_hidden_states, prefix_pool

ProgressFn = Callable[[int, int], None]
# (prompt ids per scorer, response ids, scorer pairs): the divergence step's items.
ScoringItem = tuple[Sequence[Sequence[int]], Sequence[int], Sequence[tuple[int, int]]]


@dataclass(frozen=True)
class TokenProfile:
    """One item's per-token results (numpy, float64), pairs in the item's order.

    lens_*[k] belong to `layers[k]`; the last layer is the model's output. `top_ids_*`/`top_values_*`
    [P, k]: the k largest vocabulary terms of Σ_t KL(a‖b) (`_ab`) and of Σ_t KL(b‖a) (`_ba`);
    `term_sum_*` [P]: the sum of the whole vocabulary vector (= Σ_t KL up to float rounding).
    """

    layers: list[int]
    lens_js: np.ndarray  # [L, P, T]
    lens_kl_ab: np.ndarray  # [L, P, T]
    lens_kl_ba: np.ndarray  # [L, P, T]
    top_ids_ab: np.ndarray  # [P, k] int
    top_values_ab: np.ndarray  # [P, k]
    top_ids_ba: np.ndarray
    top_values_ba: np.ndarray
    term_sum_ab: np.ndarray  # [P]
    term_sum_ba: np.ndarray  # [P]

    @property
    def output_js(self) -> np.ndarray:
        """[P, T] per-token JS of the model's output distributions (the last layer)."""
        return self.lens_js[-1]


def lens_layers(layers: Sequence[int], num_layers: int) -> list[int]:
    """The layers to project, sorted, each in 1..num_layers, the last layer included."""
    bad = [layer for layer in layers if not 1 <= int(layer) <= num_layers]
    if bad:
        raise InputError(f"lens layers {bad}: the model has decoder layers 1..{num_layers}")
    return sorted({int(layer) for layer in layers} | {num_layers})


@contextmanager
def _captured_layers(decoder: Any, layers: Sequence[int]):
    """Forward hooks keeping the output of decoder layers `layers` (1-based) of the next forward."""
    captured: dict[int, torch.Tensor] = {}
    handles = []
    for layer in layers:

        def keep(module, args, output, layer=layer):
            captured[layer] = output[0] if isinstance(output, tuple) else output

        handles.append(decoder.layers[layer - 1].register_forward_hook(keep))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def vocabulary_terms(
    logits: torch.Tensor, pairs: Sequence[tuple[int, int]], *, block: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pair (a, b): Σ_t P_a·(log P_a − log P_b) and Σ_t P_b·(log P_b − log P_a) per vocabulary item.

    `logits` [S, T, V] (raw: renormalised here in float64, `block` positions at a time, each scorer's rows once
    per block however many pairs use them). Returns two float64 [P, V] tensors; row k of each sums to Σ_t KL of
    its direction (a token with P = 0 contributes 0).
    """
    vocab = logits.shape[-1]
    ab = torch.zeros((len(pairs), vocab), dtype=torch.float64, device=logits.device)
    ba = torch.zeros_like(ab)
    used = sorted({s for pair in pairs for s in pair})
    for start in range(0, logits.shape[1], block):
        logp = {s: torch.log_softmax(logits[s, start : start + block].double(), dim=-1) for s in used}
        for k, (a, b) in enumerate(pairs):
            la, lb = logp[a], logp[b]
            diff = la - lb
            ab[k] += torch.where(la > -torch.inf, la.exp() * diff, 0.0).sum(0)
            ba[k] -= torch.where(lb > -torch.inf, lb.exp() * diff, 0.0).sum(0)
    return ab, ba


def _divergences(logits: torch.Tensor, pairs: Sequence[tuple[int, int]], backend: str) -> TokenDivergences:
    """The divergence step's math for this device: float64 reference on the CPU, fused kernels on CUDA."""
    if logits.is_cuda:
        return fast_pair_divergences(logits, pairs, backend=backend)
    raise_if_non_finite(torch.isfinite(torch.logsumexp(logits, dim=-1)))
    return pair_divergences(logits, pairs, chunk_size=4)


def _top(vector: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    values, ids = torch.topk(vector, min(k, vector.numel()))
    return ids.cpu().numpy(), values.cpu().numpy()


def _item_profile(
    states: dict[int, torch.Tensor],
    norm: Any,
    head: Any,
    layers: list[int],
    pairs: Sequence[tuple[int, int]],
    top_k: int,
    backend: str,
) -> TokenProfile:
    """One item's profile from its states [S, T, H] per layer (the last layer's already normed)."""
    per_layer, final_logits = [], None
    for layer in layers:
        hidden = states[layer] if layer == layers[-1] else norm(states[layer])
        logits = lm_head_logits(hidden, head.weight, getattr(head, "bias", None))
        per_layer.append(_divergences(logits, pairs, backend))
        if layer == layers[-1]:
            final_logits = logits
        del logits
    stacked = {name: np.stack([getattr(d, name).cpu().numpy() for d in per_layer]) for name in ("js", "kl_ab", "kl_ba")}
    tops: dict[str, list] = {"ids_ab": [], "values_ab": [], "ids_ba": [], "values_ba": [], "sum_ab": [], "sum_ba": []}
    terms_ab, terms_ba = vocabulary_terms(final_logits, pairs)
    for k in range(len(pairs)):
        for direction, vector in (("ab", terms_ab[k]), ("ba", terms_ba[k])):
            ids, values = _top(vector, top_k)
            tops[f"ids_{direction}"].append(ids)
            tops[f"values_{direction}"].append(values)
            tops[f"sum_{direction}"].append(float(vector.sum()))
    return TokenProfile(
        layers=list(layers),
        lens_js=stacked["js"],
        lens_kl_ab=stacked["kl_ab"],
        lens_kl_ba=stacked["kl_ba"],
        top_ids_ab=np.array(tops["ids_ab"]),
        top_values_ab=np.array(tops["values_ab"]),
        top_ids_ba=np.array(tops["ids_ba"]),
        top_values_ba=np.array(tops["values_ba"]),
        term_sum_ab=np.array(tops["sum_ab"]),
        term_sum_ba=np.array(tops["sum_ba"]),
    )


def _whole_sequence_forwards(engine: Any, decoder: Any, specs: list, max_batch_tokens: int):
    """Per packed forward of whole sequences (prompt + response[:-1]): (item indices, last hidden [B, W, H],
    per item (its rows [S, 1], its positions [S, T]))."""
    lengths = [(len(prompts), max(len(p) for p in prompts) + len(response) - 1) for prompts, response in specs]
    for batch in pack_items(lengths, max_batch_tokens):
        sequences = [list(p) + specs[i][1][:-1] for i in batch for p in specs[i][0]]
        width = max(len(s) for s in sequences)
        input_ids = torch.full((len(sequences), width), engine.pad_id, dtype=torch.long)
        attention = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, seq in enumerate(sequences):
            input_ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
            attention[row, : len(seq)] = 1
        device = engine.model.device
        last = decoder(
            input_ids=to_device(input_ids, device), attention_mask=to_device(attention, device), use_cache=False
        ).last_hidden_state
        picks, row = [], 0
        for i in batch:
            prompts, response = specs[i]
            rows = torch.arange(row, row + len(prompts), device=last.device)[:, None]
            starts = torch.as_tensor([len(p) - 1 for p in prompts], device=last.device)[:, None]
            picks.append((rows, starts + torch.arange(len(response), device=last.device)))
            row += len(prompts)
        yield batch, last, picks


def _shared_prefix_forwards(engine: Any, decoder: Any, specs: list, max_batch_tokens: int):
    """As `_whole_sequence_forwards`, but each distinct prompt without its last token runs once (its K/V
    shared, `resources.shared_prefix`) and the packed forwards feed [last prompt token] + response[:-1]: every
    position that predicts a response token is in the continuation, where the layer hooks see it."""
    pool = prefix_pool(engine, [p[:-1] for prompts, _ in specs for p in prompts])
    lengths = [(len(prompts), len(response)) for prompts, response in specs]
    for batch in pack_items(lengths, max_batch_tokens):
        rows = [r for i in batch for r in pool.rows([p[:-1] for p in specs[i][0]])]
        continuations = [[p[-1], *specs[i][1][:-1]] for i in batch for p in specs[i][0]]
        last = continuation_hidden_states(engine, pool, rows, continuations)
        picks, row = [], 0
        for i in batch:
            prompts, response = specs[i]
            index = torch.arange(row, row + len(prompts), device=last.device)[:, None]
            picks.append((index, torch.arange(len(response), device=last.device).expand(len(prompts), -1)))
            row += len(prompts)
        yield batch, last, picks


@torch.inference_mode()
def token_profile_pass(
    engine: Any,
    items: Sequence[ScoringItem],
    layers: Sequence[int],
    *,
    top_k: int = 50,
    max_batch_tokens: int = 4096,
    backend: str = "auto",
    shared_prefixes: bool = False,
    progress: ProgressFn | None = None,
) -> list[TokenProfile]:
    """The per-token pass (module docstring) for every item, in input order.

    `engine`: an HFEngine (its model, pad id and device). `layers`: the lens layers (1-based); the
    model's last layer is added. Items are packed by length into forwards of at most
    `max_batch_tokens` rows × width (one item always fits alone). `shared_prefixes`: each distinct prompt
    (but its last token) runs once and the forwards feed only the rest (`_shared_prefix_forwards`): the same
    values up to float rounding, about half the tokens on configs/demo.yaml.
    """
    num_layers = engine.num_layers
    layers = lens_layers(layers, num_layers)
    decoder = engine._decoder()
    norm, head = decoder.norm, engine.model.get_output_embeddings()
    specs = []
    for prompts, response_ids, _ in items:
        response = [int(t) for t in response_ids]
        if not response:
            raise InputError("cannot teacher-force an empty response")
        specs.append(([[int(t) for t in p] for p in prompts], response))
    results: list[TokenProfile | None] = [None] * len(items)
    done = 0
    forwards = _shared_prefix_forwards if shared_prefixes else _whole_sequence_forwards
    with _captured_layers(decoder, [layer for layer in layers if layer < num_layers]) as captured:
        for batch, last, picks in forwards(engine, decoder, specs, max_batch_tokens):
            for i, (rows, positions) in zip(batch, picks):
                states = {layer: captured[layer][rows, positions] for layer in layers[:-1]}
                states[layers[-1]] = last[rows, positions]
                results[i] = _item_profile(states, norm, head, layers, items[i][2], top_k, backend)
                done += 1
            captured.clear()
            del last
            if progress:
                progress(done, len(items))
    return [r for r in results if r is not None]
