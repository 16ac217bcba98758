"""A real HFEngine around a random-weight Qwen2 built on the device: no download, no tokenizer
(prompts and responses are token ids), so the GPU tests run on a machine with nothing but torch,
transformers (and Triton). The architecture is the study's (Qwen2); only the sizes are small.
Heads have 64 dimensions or more, so SDPA's flash and memory-efficient kernels take them (as
they take Qwen2.5-7B's 128), not a fallback the study never runs."""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.random_qwen2 import build_random_qwen2, qwen2_config
from resources.hf_engine import HFEngine

STOP_ID = 3
DEVICE = "cuda"  # a module setting, so the tests' logic can be dry-run elsewhere
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float64": torch.float64}


class TokenEngine(HFEngine):
    """HFEngine's generation and teacher forcing on an in-memory model; prompts are token ids."""

    def __init__(self, model: Any, device: str, dtype: str, stop_id: int = STOP_ID):
        self.model = model
        self.tokenizer = None
        self.source = None
        self.device = device
        self.dtype = dtype
        self.pad_id = 0
        self.stop_ids = {stop_id}


def random_qwen2_engine(
    dtype: str,
    *,
    device: str | None = None,
    vocab: int = 8192,
    hidden: int = 256,
    intermediate: int = 512,
    layers: int = 2,
    seed: int = 0,
) -> TokenEngine:
    device = device or DEVICE
    config = qwen2_config(tiny=True, tiny_vocab=vocab, tiny_layers=layers)
    # Heads of 128 dimensions once the model is wide (as in Qwen2.5-7B; the flash kernel's range).
    heads = max(4, hidden // 128)
    config.hidden_size, config.intermediate_size = hidden, intermediate
    config.num_attention_heads, config.num_key_value_heads = heads, max(2, heads // 4)
    if getattr(config, "head_dim", None) is not None:
        config.head_dim = hidden // heads
    # The tiny config's init std (0.2 at width 64) scaled with 1/√width: logits of the size the
    # tiny model has (JS ~ 0.1 nats between prompts), not ever more peaked as the width grows.
    config.initializer_range = 0.2 * (64 / hidden) ** 0.5
    # Weights drawn once in float32 and cast, so every dtype holds the same model (up to rounding).
    model = build_random_qwen2(config, dtype=torch.float32, device=device, seed=seed).to(DTYPES[dtype])
    return TokenEngine(model, device, dtype)


def random_ids(generator: torch.Generator, n: int, vocab: int) -> list[int]:
    """Token ids that are neither the pad nor the stop id."""
    return torch.randint(10, vocab, (n,), generator=generator).tolist()


class PackedScorer:
    """What `GpuLLM.batch_response_divergences` and `describe` do, on a TokenEngine (GpuLLM itself
    needs a model directory with a tokenizer, and dagster, neither of which the GPU machine has)."""

    def __init__(self, engine: TokenEngine, max_batch_tokens: int = 16384):
        self.engine = engine
        self.max_batch_tokens = max_batch_tokens
        self.dtype = engine.dtype  # the loaded dtype: generation and scoring (scoring_dtype empty)

    def describe(self) -> dict[str, Any]:
        return {"device": self.engine.device, "dtype": self.dtype, "scoring_dtype": self.dtype}

    def scoring_engine(self, dtype: str | None = None) -> TokenEngine:
        from resources.weight_upcast import cast_engine

        cast_engine(self.engine, dtype or self.dtype)
        return self.engine

    def batch_response_divergences(self, items, *, pair_chunk_size: int, progress=None, dtype: str | None = None):
        from resources.fast_engine import batch_response_divergences

        return batch_response_divergences(
            self.scoring_engine(dtype), items, max_batch_tokens=self.max_batch_tokens, progress=progress
        )
