"""Generation, teacher forcing and hidden states with a transformers causal LM.

This is the model-side engine behind the Dagster LLM resources. It knows nothing of Dagster:
a researcher can build one in a notebook with ``HFEngine.load("embedded")``.

Conventions
- A prompt is the chat template applied to (system prompt, user question) with the generation
  prompt on; responses are token ids, never re-tokenized text (except under the earlier study's
  scoring rule, `original_template_rendering`, which re-tokenizes as that study did).
- Teacher forcing scores the response ids under several system prompts at once: one right-padded
  batch, so padding sits after every real token and cannot change a causal model's results at
  real positions (up to kernel-level float noise, tested).
- Hidden states are sliced to the positions that predict response tokens *before* the LM head,
  so the full-vocabulary projection is paid only where it is used.
- Shared prefixes (`prefix_pool`, then `response_logits(..., prefixes=pool)`): each prompt's K/V
  is computed once and every response scored under it feeds only its own tokens; the same
  distributions up to float rounding (`resources.shared_prefix`). Prompts run alone are kept for
  later calls (`prefix_memo`, up to PREFIX_MEMO_BYTES): the same bits as running them again.
- Divergences take the raw float32 logits (`response_logits`): `pair_divergences` renormalises
  every row in float64 itself, so a float32 log_softmax first only added its own rounding (about
  5 % of the CPU divergence step; benchmarks/cpu_divergence_step.py), as the GPU path never did.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from persona_assets.runs.errors import InputError
from persona_assets.measure.scoring_faults import raise_if_non_finite
from resources.model_loading import ModelSource, load_model_and_tokenizer, resolve_model_source
from resources.shared_prefix import PrefixMemo, PrefixPool, continuation_hidden_states, prefix_pool, response_states

ProgressFn = Callable[[int, int], None]
# Prompts kept across calls: ~2.3 MB each for the embedded model (30 layers, 3 K/V heads, ~50 tokens).
PREFIX_MEMO_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Generation:
    """One greedy response: its token ids (end-of-turn token included when emitted)."""

    token_ids: list[int]
    hit_max_new_tokens: bool


def chat_prompt_ids(tokenizer: Any, system_prompt: str, user_message: str) -> list[int]:
    """Token ids of the chat template for (system, user) with the generation prompt on."""
    messages = [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": user_message},
    ]
    encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = encoded["input_ids"] if hasattr(encoded, "keys") else encoded
    if ids and isinstance(ids[0], list):
        ids = ids[0]
    return [int(i) for i in ids]


def template_closing_ids(tokenizer: Any, system_prompt: str, user_message: str) -> list[int]:
    """The ids the chat template puts after an assistant message (e.g. <|im_end|> and a newline)."""
    from persona_assets.measure.scoring_rule import template_closing_ids as closing

    content = "Rock and dust."  # any plain text: the closing ids do not depend on it
    messages = [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": user_message},
        {"role": "assistant", "content": content},
    ]
    rendered = tokenizer.apply_chat_template(messages, tokenize=True)
    rendered = rendered["input_ids"] if hasattr(rendered, "keys") else rendered
    if rendered and isinstance(rendered[0], list):
        rendered = rendered[0]
    return closing(
        rendered,
        chat_prompt_ids(tokenizer, system_prompt, user_message),
        tokenizer.encode(content, add_special_tokens=False),
    )


def original_template_rendering(
    tokenizer: Any, system_prompt: str, user_message: str, response_ids: Sequence[int]
) -> list[int]:
    """The ids the earlier study teacher-forced for a response (`persona_assets.measure.scoring_rule`).

    The response is decoded as vLLM's output text is (special tokens skipped, no clean-up of
    tokenization spaces), the chat template is rendered around it as a string and the string is
    tokenised whole, as that study's script did.
    """
    text = tokenizer.decode(list(response_ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)
    messages = [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": user_message},
        {"role": "assistant", "content": text},
    ]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    return [int(i) for i in tokenizer.encode(rendered, add_special_tokens=False)]


def lm_head(head: Any, hidden: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """`head(hidden)`, written into `out` ([..., V], reused by the caller) for a bias-free linear head
    of out's dtype; otherwise `out` is ignored.

    Why: a response's logits (12 × 48 × 49k float32, 113 MB on configs/demo.yaml) are too large
    for malloc to keep once freed, so a fresh tensor per response is mapped and page-faulted in
    again each time: 244 ms per LM head against 202 ms into a reused buffer on 2 EPYC cores. The
    same GEMM as `torch.nn.Linear` (x · Wᵀ), so the same values.
    """
    if out is None or not isinstance(head, torch.nn.Linear) or head.bias is not None or head.weight.dtype != out.dtype:
        return head(hidden)
    torch.mm(hidden.reshape(-1, hidden.shape[-1]), head.weight.t(), out=out.view(-1, head.weight.shape[0]))
    return out


def finite_rows(logits: torch.Tensor) -> torch.Tensor:
    """[..., V] → [...] bool: every logit of the row is finite (`isfinite(logits).all(-1)`).

    From the row's minimum and maximum, which NaN propagates into and ±inf shows in: one read of
    the logits and no [..., V] bool tensor, a fifth of the time of isfinite + all on the CPU
    (12 × 48 × 49k logits per response on configs/demo.yaml).
    """
    low, high = torch.aminmax(logits, dim=-1)
    return torch.isfinite(low) & torch.isfinite(high)


class HFEngine:
    """A loaded model + tokenizer with the three operations the experiment needs."""

    def __init__(self, model: Any, tokenizer: Any, source: ModelSource, device: str, dtype: str):
        self.model = model
        self.tokenizer = tokenizer
        self.source = source
        self.device = device
        self.dtype = dtype
        if tokenizer.chat_template is None:
            raise InputError(f"model {source.display_name!r}: tokenizer has no chat template")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.stop_ids = self._stop_token_ids()
        self.prefix_memo = PrefixMemo(PREFIX_MEMO_BYTES)

    @classmethod
    def load(
        cls, model: str, *, device: str = "cpu", dtype: str = "float32", cache_dir: Path | None = None
    ) -> "HFEngine":
        source = resolve_model_source(model)
        hf_model, tokenizer = load_model_and_tokenizer(source, device=device, dtype=dtype, cache_dir=cache_dir)
        return cls(hf_model, tokenizer, source, device, dtype)

    # ------------------------------------------------------------------ prompts
    def _stop_token_ids(self) -> set[int]:
        ids: set[int] = set()
        for candidate in (self.model.generation_config.eos_token_id, self.tokenizer.eos_token_id):
            if isinstance(candidate, int):
                ids.add(candidate)
            elif candidate:
                ids.update(int(c) for c in candidate)
        return ids

    def chat_prompt_ids(self, system_prompt: str, user_message: str) -> list[int]:
        return chat_prompt_ids(self.tokenizer, system_prompt, user_message)

    def decode(self, token_ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)

    @property
    def num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def vocab_size(self) -> int:
        return int(self.model.get_output_embeddings().weight.shape[0])

    # --------------------------------------------------------------- generation
    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[list[int]],
        *,
        max_new_tokens: int,
        batch_size: int = 16,
        progress: ProgressFn | None = None,
    ) -> list[Generation]:
        """Greedy responses, batched by similar prompt length with left padding."""
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[Generation | None] = [None] * len(prompts)
        for start in range(0, len(order), batch_size):
            batch = [order[k] for k in range(start, min(start + batch_size, len(order)))]
            width = max(len(prompts[i]) for i in batch)
            input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                ids = prompts[i]
                input_ids[row, width - len(ids) :] = torch.tensor(ids)
                attention[row, width - len(ids) :] = 1
            output = self.model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention.to(self.device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=self.pad_id,
                eos_token_id=sorted(self.stop_ids),
            )
            for row, i in enumerate(batch):
                results[i] = self._cut_at_stop(output[row, width:].tolist(), max_new_tokens)
            if progress:
                progress(min(start + batch_size, len(order)), len(order))
        return [r for r in results if r is not None]

    def _cut_at_stop(self, new_ids: list[int], max_new_tokens: int) -> Generation:
        for pos, token in enumerate(new_ids):
            if token in self.stop_ids:
                return Generation(new_ids[: pos + 1], hit_max_new_tokens=False)
        return Generation(new_ids[:max_new_tokens], hit_max_new_tokens=len(new_ids) >= max_new_tokens)

    # ---------------------------------------------------------- teacher forcing
    def _right_padded(self, sequences: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in sequences)
        input_ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, seq in enumerate(sequences):
            input_ids[row, : len(seq)] = torch.tensor(seq)
            attention[row, : len(seq)] = 1
        return input_ids.to(self.device), attention.to(self.device)

    def _decoder(self) -> Any:
        return getattr(self.model, self.model.base_model_prefix)

    def prefix_pool(self, prompts: Sequence[Sequence[int]]) -> PrefixPool:
        """K/V of every distinct prompt, each in a forward of its own (see `resources.shared_prefix`);
        prompts of earlier calls come from `prefix_memo`."""
        return prefix_pool(self, prompts, memo=self.prefix_memo)

    @torch.inference_mode()
    def response_logits(
        self,
        prompts: Sequence[list[int]],
        response_ids: Sequence[int],
        *,
        prefixes: PrefixPool | None = None,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Teacher-force one response under several prompts (one per scoring persona).

        Returns float32 logits [S, T, V], checked finite: row s, position t is the distribution
        P_s(· | prompt_s, response[:t]) that predicts response token t, unnormalised. With
        `prefixes` (a pool holding every prompt) only the response tokens are fed, after the
        prompts' cached K/V. `out`: a float32 [S, T, V] tensor the logits may be written into
        (see `lm_head`); the result is then that tensor.
        """
        response = [int(t) for t in response_ids]
        if not response:
            raise InputError("cannot teacher-force an empty response")
        n_tokens = len(response)
        # The last response token is predicted but never conditioned on, so it is not fed.
        if prefixes is not None:
            rows = prefixes.rows(prompts)
            continuation = continuation_hidden_states(self, prefixes, rows, [response[:-1]] * len(rows))
            picked = response_states(prefixes, rows, continuation, n_tokens)
        else:
            sequences = [list(p) + response[:-1] for p in prompts]
            input_ids, attention = self._right_padded(sequences)
            hidden = self._decoder()(input_ids=input_ids, attention_mask=attention).last_hidden_state
            rows_index = torch.arange(len(prompts), device=hidden.device)[:, None]
            starts = torch.tensor([len(p) - 1 for p in prompts], device=hidden.device)[:, None]
            positions = starts + torch.arange(n_tokens, device=hidden.device)[None, :]
            picked = hidden[rows_index, positions]  # [S, T, H]: only the positions that predict the response
        logits = lm_head(self.model.get_output_embeddings(), picked, out)
        raise_if_non_finite(finite_rows(logits))
        return logits.float()

    @torch.inference_mode()
    def response_logprobs(
        self, prompts: Sequence[list[int]], response_ids: Sequence[int], *, prefixes: PrefixPool | None = None
    ) -> torch.Tensor:
        """`response_logits` normalised: float32 log-probabilities [S, T, V]."""
        return torch.log_softmax(self.response_logits(prompts, response_ids, prefixes=prefixes), dim=-1)

    @torch.inference_mode()
    def full_forward_logprobs(self, prompt: list[int], response_ids: Sequence[int]) -> torch.Tensor:
        """Slow reference: one unpadded sequence through the full model, log-probs [T, V]."""
        sequence = torch.tensor([list(prompt) + list(response_ids)], device=self.device)
        logits = self.model(input_ids=sequence).logits[0]
        start = len(prompt) - 1
        return torch.log_softmax(logits[start : start + len(response_ids)].float(), dim=-1)

    # ------------------------------------------------------------ hidden states
    @torch.inference_mode()
    def last_prompt_hidden_states(
        self,
        prompts: Sequence[list[int]],
        layers: Sequence[int],
        *,
        batch_size: int = 16,
        progress: ProgressFn | None = None,
    ) -> torch.Tensor:
        """Hidden state of each prompt's last token after decoder layer L (1-based; 0 = embeddings).

        Returns float32 [n_prompts, len(layers), hidden_size].
        """
        for layer in layers:
            if not 0 <= layer <= self.num_layers:
                raise InputError(f"cosine layer {layer}: the model has layers 0..{self.num_layers}")
        out = []
        for start in range(0, len(prompts), batch_size):
            batch = list(prompts[start : start + batch_size])
            input_ids, attention = self._right_padded(batch)
            states = self._decoder()(
                input_ids=input_ids, attention_mask=attention, output_hidden_states=True
            ).hidden_states
            last = torch.tensor([len(p) - 1 for p in batch], device=input_ids.device)
            rows = torch.arange(len(batch), device=input_ids.device)
            out.append(torch.stack([states[layer][rows, last].float() for layer in layers], dim=1).cpu())
            if progress:
                progress(min(start + batch_size, len(prompts)), len(prompts))
        return torch.cat(out)
