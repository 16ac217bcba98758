"""Greedy generation with vLLM (GPU only, used when vllm is importable)."""

from __future__ import annotations

from collections.abc import Sequence

from resources.hf_engine import Generation


def generate_with_vllm(
    model_path: str,
    prompts: Sequence[list[int]],
    *,
    max_new_tokens: int,
    dtype: str,
    gpu_memory_utilization: float,
    stop_token_ids: list[int],
) -> list[Generation]:
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    llm = LLM(model=model_path, dtype=dtype, gpu_memory_utilization=gpu_memory_utilization, enforce_eager=False)
    params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop_token_ids=stop_token_ids)
    outputs = llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], params)
    results = []
    for output in outputs:
        completion = output.outputs[0]
        ids = list(completion.token_ids)
        results.append(Generation(ids, hit_max_new_tokens=completion.finish_reason == "length"))
    return results
