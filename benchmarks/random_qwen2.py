"""Random-weight Qwen2 models for the GPU benchmarks, built on the device (no download).

The cost of a forward depends on the shapes, not on the weights, so the exact Qwen2.5-7B-Instruct
shapes with random weights cost what the real model costs; `tiny` gives a small model of the same
architecture for the CPU smoke tests.
"""

from __future__ import annotations

import torch

# Qwen2.5-7B-Instruct's config.json, the fields that set the cost.
QWEN25_7B_SHAPES = dict(
    vocab_size=152064,
    hidden_size=3584,
    intermediate_size=18944,
    num_hidden_layers=28,
    num_attention_heads=28,
    num_key_value_heads=4,
    max_position_embeddings=32768,
    rope_theta=1000000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
)


def qwen2_config(*, tiny: bool, init_std: float = 0.02, tiny_vocab: int = 1024, tiny_layers: int = 2):
    """The 7B-shaped config, or a tiny one (larger init so its random outputs are not uniform)."""
    from transformers import Qwen2Config

    if tiny:
        config = Qwen2Config(
            vocab_size=tiny_vocab,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=tiny_layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            initializer_range=0.2,
            tie_word_embeddings=False,
        )
    else:
        config = Qwen2Config(**QWEN25_7B_SHAPES, initializer_range=init_std)
    config._attn_implementation = "sdpa"
    return config


def build_random_qwen2(config, *, dtype: torch.dtype, device: str, seed: int = 0):
    """Qwen2ForCausalLM(config) in eval mode, initialised in `dtype` directly on `device` (seeded)."""
    from transformers import Qwen2ForCausalLM

    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Qwen2ForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()
