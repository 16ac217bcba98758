"""The GPU implementation of the LLM resource: transformers on CUDA, vLLM for generation when installed.

Split from `resources.llm` (the interface and the CPU implementation); `persona_assets.environment`
picks this class when PERSONA_RESOURCES=gpu. torch and vllm are imported lazily, inside methods.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

from pydantic import Field, PrivateAttr, field_validator

from resources.llm import LLMResource, ProgressFn


class GpuLLM(LLMResource):
    """transformers on CUDA for teacher forcing and hidden states; vLLM for generation when installed."""

    dtype: str = Field("bfloat16", description="float32 | bfloat16 | float16")
    use_vllm: bool = Field(True, description="generate with vLLM when it is importable")
    vllm_gpu_memory_utilization: float = Field(0.5, description="share of GPU memory vLLM may take")
    cuda_device: int = Field(0)
    teacher_forcing_batch_tokens: int = Field(
        16384, description="rows x width bound of one teacher-forcing forward (several responses packed by length)"
    )
    lean_generation: bool = Field(True, description="without vLLM, generate with the lean greedy decode loop")
    # Both teacher-forcing speed-ups are on by default: on one H200 (benchmarks/gpu_phase1.py, 12 x 20 x 512 study)
    # together they change a response-mean JS by at most 6.9e-5 nats, inside that run's own float32
    # scoring-precision bound (1.3e-4 nats), and take teacher forcing from 48.0 to 39.6 s.
    shared_prefixes: bool = Field(
        True,
        description="teacher forcing: each scorer prompt's K/V computed once per call, the packed forwards feed only "
        "the responses (benchmarks/gpu_phase1.py --tf-variants compares both paths)",
    )
    liger_teacher_forcing: bool | None = Field(
        None,
        description="teacher forcing (never generation) with Liger's fused RMSNorm, RoPE and SwiGLU kernels: "
        "null (default) = when liger-kernel (the gpu extra) is installed and covers the model type, "
        "true = required (the run fails without it), false = off",
    )
    generation_cache: str = Field(
        "fixed",
        description="lean loop's KV cache: fixed (fixed-width buffers, decode step captured as a CUDA graph; "
        "the tokens of generate() with the memory-efficient attention kernel) | dynamic (transformers' cache, eager) "
        "| static (transformers' StaticCache, eager)",
    )

    _shard_device: int | None = PrivateAttr(default=None)
    _liger_available: bool | None = PrivateAttr(default=None)  # `uses_liger`'s answer for null, asked once

    @field_validator("generation_cache")
    @classmethod
    def _known_generation_cache(cls, value: str) -> str:
        # The same names as resources.lean_generation.GENERATION_CACHES (not imported: it needs torch).
        if value not in ("fixed", "dynamic", "static"):
            raise ValueError(f"generation_cache must be one of fixed | dynamic | static, got {value!r}")
        return value

    def _torch_device(self) -> str:
        return f"cuda:{self.cuda_device if self._shard_device is None else self._shard_device}"

    def use_shard_device(self, shard: int) -> None:
        """Shard k of a multi-GPU run uses GPU (cuda_device + k) mod the number of visible GPUs.

        Called at the start of a shard step, before the model loads (each step is its own process
        under the multiprocess executor); an engine already loaded in this process stays where it is.
        """
        if self._engine is not None:
            return
        import torch

        count = torch.cuda.device_count() or 1
        self._shard_device = (self.cuda_device + shard) % count

    def generation_backend(self) -> str:
        """vllm, transformers (generate()) or transformers-lean-<cache>: part of the response cache key,
        since decode paths can differ in bf16 rounding and so, rarely, in greedy tokens."""
        if self.use_vllm and importlib.util.find_spec("vllm") is not None:
            return "vllm"
        return f"transformers-lean-{self.generation_cache}" if self.lean_generation else "transformers"

    def generate(
        self, prompts: Sequence[list[int]], *, max_new_tokens: int, batch_size: int, progress: ProgressFn | None = None
    ) -> list[Any]:
        if self.generation_backend() != "vllm":
            if self.lean_generation:
                from resources.lean_generation import lean_generate

                return lean_generate(
                    self.model_engine(),
                    prompts,
                    max_new_tokens=max_new_tokens,
                    batch_size=batch_size,
                    progress=progress,
                    cache_impl=self.generation_cache,
                )
            return super().generate(prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress)
        from resources.model_loading import local_model_path
        from resources.vllm_generation import generate_with_vllm

        return generate_with_vllm(
            local_model_path(self.source, cache_dir=self._cache_dir()),
            prompts,
            max_new_tokens=max_new_tokens,
            dtype=self.dtype,
            gpu_memory_utilization=self.vllm_gpu_memory_utilization,
            stop_token_ids=sorted(_stop_ids(self.tokenizer)),
        )

    def batch_response_divergences(
        self,
        items: Sequence[tuple[Sequence[list[int]], Sequence[int], Sequence[tuple[int, int]]]],
        *,
        pair_chunk_size: int,
        progress: ProgressFn | None = None,
        dtype: str | None = None,
    ) -> list[Any]:
        """Several responses per bf16 forward, LM head on response positions only, Triton divergences."""
        from resources.fast_engine import batch_response_divergences

        return batch_response_divergences(
            self.scoring_engine(dtype),
            items,
            max_batch_tokens=self.teacher_forcing_batch_tokens,
            progress=progress,
            shared_prefixes=self.shared_prefixes,
            liger=self.uses_liger(),
        )

    def uses_liger(self) -> bool:
        """Whether teacher forcing runs Liger's kernels (`liger_teacher_forcing`; null: when available)."""
        if self.liger_teacher_forcing is not None:
            return self.liger_teacher_forcing
        if self._liger_available is None:
            from resources.liger_kernels import liger_covers

            self._liger_available = liger_covers(self.model_type())
        return self._liger_available


def _stop_ids(tokenizer: Any) -> set[int]:
    eos = tokenizer.eos_token_id
    return {int(eos)} if eos is not None else set()
