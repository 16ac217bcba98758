"""The LLM resources: one interface, a CPU and a GPU implementation.

Assets annotate their parameter with `LLMResource`; `persona_assets.environment` picks the
implementation (PERSONA_RESOURCES) and maps PERSONA_MODEL / PERSONA_DTYPE onto its config.
torch, transformers and vllm are imported lazily, inside methods, so the UI and the analysis
steps load without them.

The model is loaded on first use (a run whose generations are all cached needs only the
tokenizer until teacher forcing) and freed in `teardown_after_execution`: at the end of the run
under the default in-process executor, where one load serves every model step, or at the end of
each step under the multiprocess executor.
"""

from __future__ import annotations

import gc
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

ProgressFn = Callable[[int, int], None]


class LLMResource(dg.ConfigurableResource, ABC):
    """A chat model for generation, teacher forcing and hidden states (abstract: use CpuLLM/GpuLLM)."""

    model: str = Field("embedded", description="'embedded', a .gguf file, a model directory or a hub id")
    dtype: str = Field("float32", description="float32 | bfloat16 | float16")
    model_cache_dir: str = Field("", description="where converted GGUF models are cached; empty = ~/.cache")
    model_fingerprint: str = Field(
        "stat",
        description="how the model's identity (which keys the response and divergence caches) follows its weight "
        "files: stat = each file's size and modification time (cheap) | content = a SHA-256 of every weight file "
        "(reads all weights at each run start; also catches other bytes with the same size and mtime)",
    )
    scoring_dtype: str = Field(
        "",
        description="teacher forcing in this precision: empty = dtype; float32 = the loaded weights upcast in place "
        "for scoring only (exact; generation and hidden states stay in dtype; see resources/weight_upcast.py)",
    )
    shared_prefixes: bool = Field(
        True,
        description="teacher forcing: each scorer prompt's K/V computed once per call and reused for every response "
        "scored under it (the same values up to float rounding); false = every sequence fed whole",
    )

    _engine: Any = PrivateAttr(default=None)
    _tokenizer: Any = PrivateAttr(default=None)
    _source: Any = PrivateAttr(default=None)
    _log: Any = PrivateAttr(default=None)  # the run's logger: a model conversion or load says so in the run log

    @property
    def effective_scoring_dtype(self) -> str:
        # Checked here, on the resolved value (a field validator would see PERSONA_SCORING_DTYPE's EnvVar).
        # Only float32 (or the loaded dtype): a downcast would round the weights that generation uses.
        if self.scoring_dtype not in ("", "float32"):
            raise ValueError(f"scoring_dtype must be empty (= dtype) or float32, got {self.scoring_dtype!r}")
        return self.scoring_dtype or self.dtype

    @property
    def fingerprint_mode(self) -> str:
        # Checked on the resolved value, like scoring_dtype (PERSONA_MODEL_FINGERPRINT is an EnvVar until then).
        from resources.model_files import check_fingerprint_mode

        return check_fingerprint_mode(self.model_fingerprint)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        _ = self.effective_scoring_dtype  # a bad setting fails when the run starts, before any model work
        _ = self.fingerprint_mode
        self._log = context.log.info if context.log is not None else None

    @abstractmethod
    def _torch_device(self) -> str:
        """The torch device the weights live on."""

    def generation_backend(self) -> str:
        return "transformers"

    # ------------------------------------------------------------ lifecycle
    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        had_engine = self._engine is not None
        self._engine = None
        self._tokenizer = None
        if had_engine and self._torch_device().startswith("cuda"):
            # The GPU memory goes back now, for the next model step of this process (a Dask worker runs several):
            # a full collection frees what only reference cycles still hold. On the CPU the interpreter's own
            # collections do that in time, and a full one costs 0.3-0.5 s per run.
            gc.collect()
            import torch

            torch.cuda.empty_cache()

    def _cache_dir(self) -> Path | None:
        return Path(self.model_cache_dir) if self.model_cache_dir else None

    @property
    def source(self) -> Any:
        if self._source is None:
            from resources.model_loading import resolve_model_source

            self._source = resolve_model_source(self.model, self.fingerprint_mode)
        return self._source

    def check_model_files(self) -> None:
        """Every file the model needs is there (config.json, the weights, each shard an index names).

        Cheap (a few stat calls, no weights read, no content hash): the run's first step calls it,
        so a broken model directory fails the run once, before any model step.
        """
        from resources.model_loading import resolve_model_source

        resolve_model_source(self.model, "stat")

    @property
    def tokenizer(self) -> Any:
        if self._engine is not None:
            return self._engine.tokenizer
        if self._tokenizer is None:
            from resources.model_loading import load_tokenizer

            self._tokenizer = load_tokenizer(self.source, cache_dir=self._cache_dir(), log=self._log)
        return self._tokenizer

    @property
    def engine(self) -> Any:
        """The loaded HFEngine (loads the weights on first access)."""
        if self._engine is None:
            from resources.hf_engine import HFEngine
            from resources.model_loading import load_model_and_tokenizer

            # The tokenizer this run already loaded and checked (its prompts are checked before the weights load).
            model, tokenizer = load_model_and_tokenizer(
                self.source,
                device=self._torch_device(),
                dtype=self.dtype,
                cache_dir=self._cache_dir(),
                log=self._log,
                tokenizer=self._tokenizer,
            )
            self._engine = HFEngine(model, tokenizer, self.source, self._torch_device(), self.dtype)
        return self._engine

    def model_engine(self) -> Any:
        """The engine computing in the dtype its weights were loaded in (generation, hidden states)."""
        from resources.weight_upcast import cast_engine, loaded_dtype

        cast_engine(self.engine, loaded_dtype(self.engine))
        return self.engine

    def scoring_engine(self, dtype: str | None = None) -> Any:
        """The engine computing in `dtype`, by default the scoring dtype (teacher forcing)."""
        from resources.weight_upcast import cast_engine, loaded_dtype

        cast_engine(self.engine, dtype or self.scoring_dtype or loaded_dtype(self.engine))
        return self.engine

    def use_shard_device(self, shard: int) -> None:
        """Run this step on the device for shard `shard` (a no-op on the CPU)."""

    def load_for_teacher_forcing(self) -> None:
        """Load the weights now (so a timing of the scoring that follows excludes the load)."""
        _ = self.engine

    def describe(self) -> dict[str, Any]:
        """What produced the numbers: recorded next to every output."""
        return {
            "model": self.model,
            "model_name": self.source.display_name,
            "model_fingerprint": self.source.fingerprint,
            "dtype": self.dtype,
            "scoring_dtype": self.effective_scoring_dtype,
            "device": self._torch_device(),
            "resource": type(self).__name__,
            "generation_backend": self.generation_backend(),
        }

    # ----------------------------------------------------------- operations
    def chat_prompt_ids(self, system_prompt: str, user_message: str) -> list[int]:
        from resources.hf_engine import chat_prompt_ids

        return chat_prompt_ids(self.tokenizer, system_prompt, user_message)

    def template_closing_ids(self, system_prompt: str, user_message: str) -> list[int]:
        """What the chat template appends after an assistant message (for the original scoring rule)."""
        from resources.hf_engine import template_closing_ids

        return template_closing_ids(self.tokenizer, system_prompt, user_message)

    def original_template_rendering(
        self, system_prompt: str, user_message: str, response_ids: Sequence[int]
    ) -> list[int]:
        """The conversation the earlier study teacher-forced for a response: decoded, re-rendered, re-tokenised."""
        from resources.hf_engine import original_template_rendering

        return original_template_rendering(self.tokenizer, system_prompt, user_message, response_ids)

    def decode(self, token_ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)

    def generate(
        self, prompts: Sequence[list[int]], *, max_new_tokens: int, batch_size: int, progress: ProgressFn | None = None
    ) -> list[Any]:
        return self.model_engine().generate(
            prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress
        )

    def response_divergences(
        self,
        prompts: Sequence[list[int]],
        response_ids: Sequence[int],
        pairs: Sequence[tuple[int, int]],
        *,
        pair_chunk_size: int,
        workspace: Any = None,
        prefixes: Any = None,
    ) -> Any:
        """Teacher-force one response under every prompt; per-token JS/KL for the given scorer pairs.

        `workspace` (a `DivergenceWorkspace`) lets consecutive calls reuse the float64 buffers;
        `prefixes` (a `PrefixPool` holding every prompt) feeds only the response after their K/V.
        """
        from persona_assets.measure.divergence import pair_divergences

        # Raw logits: pair_divergences renormalises in float64 (a float32 log_softmax only adds rounding).
        # With a workspace they land in one buffer reused by every response of the call (`lm_head`).
        out = None
        if workspace is not None:
            import torch

            shape = (len(prompts), len(response_ids), self.engine.vocab_size)
            out = workspace.take("logits", shape, torch.float32, self.engine.model.device)
        logits = self.engine.response_logits(prompts, response_ids, prefixes=prefixes, out=out)
        return pair_divergences(logits, pairs, chunk_size=pair_chunk_size, workspace=workspace)

    def batch_response_divergences(
        self,
        items: Sequence[tuple[Sequence[list[int]], Sequence[int], Sequence[tuple[int, int]]]],
        *,
        pair_chunk_size: int,
        progress: ProgressFn | None = None,
        dtype: str | None = None,
    ) -> list[Any]:
        """`response_divergences` for many (prompts, response_ids, pairs) items, in order.

        This default scores one response at a time; GpuLLM packs several per forward. One
        workspace serves every item, so the divergence buffers are allocated once per call, not
        once per chunk (see `DivergenceWorkspace` for why that bounds resident memory). With
        `shared_prefixes`, every distinct prompt of the call runs once, alone, and each response's
        scorers then feed only its tokens (about half the tokens of `configs/demo.yaml`). `dtype`
        overrides the scoring dtype for this call (the noise floor's float32 re-scoring).
        """
        from persona_assets.measure.divergence import DivergenceWorkspace
        from persona_assets.measure.scoring_faults import NonFiniteLogitsError

        engine = self.scoring_engine(dtype)
        workspace = DivergenceWorkspace()
        prefixes = None
        if self.shared_prefixes and items:
            prefixes = engine.prefix_pool([p for prompts, _, _ in items for p in prompts])
        results = []
        for done, (prompts, response_ids, pairs) in enumerate(items, start=1):
            try:
                results.append(
                    self.response_divergences(
                        prompts,
                        response_ids,
                        pairs,
                        pair_chunk_size=pair_chunk_size,
                        workspace=workspace,
                        prefixes=prefixes,
                    )
                )
            except NonFiniteLogitsError as error:
                error.item = done - 1  # which item: the caller knows its response and personas
                raise
            if progress:
                progress(done, len(items))
        return results

    def token_profiles(
        self,
        items: Sequence[tuple[Sequence[list[int]], Sequence[int], Sequence[tuple[int, int]]]],
        layers: Sequence[int],
        *,
        top_k: int,
        progress: ProgressFn | None = None,
    ) -> list[Any]:
        """The per-token pass (`resources.token_profile`): logit lens at `layers` (+ the last layer), per-token
        output divergences and vocabulary KL terms, for the divergence step's items, in the scoring dtype."""
        from resources.token_profile import token_profile_pass

        return token_profile_pass(
            self.scoring_engine(),
            items,
            layers,
            top_k=top_k,
            max_batch_tokens=int(getattr(self, "teacher_forcing_batch_tokens", 4096)),
            shared_prefixes=self.shared_prefixes,
            progress=progress,
        )

    def last_prompt_hidden_states(
        self,
        prompts: Sequence[list[int]],
        layers: Sequence[int],
        *,
        batch_size: int,
        progress: ProgressFn | None = None,
    ) -> Any:
        return self.model_engine().last_prompt_hidden_states(prompts, layers, batch_size=batch_size, progress=progress)

    def hf_config(self) -> Any:
        """The model's config.json (transformers' config object); no weights are read."""
        from transformers import AutoConfig

        from resources.model_loading import local_model_path

        return AutoConfig.from_pretrained(local_model_path(self.source, cache_dir=self._cache_dir()))

    def num_layers(self) -> int:
        return int(self.hf_config().num_hidden_layers)

    def model_type(self) -> str:
        """The architecture's name in config.json (e.g. qwen2, llama)."""
        return str(self.hf_config().model_type)

    def context_length(self) -> Any:
        """The context window (a `ContextWindow`, or None if unstated) from config.json and the tokenizer.

        No weights are read.
        """
        from persona_assets.inputs.prompt_safety import context_window

        return context_window(self.hf_config().to_dict(), getattr(self.tokenizer, "model_max_length", None))


class CpuLLM(LLMResource):
    """transformers on the CPU (laptops, CI): float32, one response scored at a time."""

    def _torch_device(self) -> str:
        return "cpu"
