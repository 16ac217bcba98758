"""The one place that picks resources from the environment.

PERSONA_RESOURCES = cpu (default) | gpu; PERSONA_MODEL (default 'embedded'); PERSONA_DTYPE;
PERSONA_GPU_SHARDS = K (default 1): split the teacher forcing into K steps, one per GPU.
"""

from __future__ import annotations

import os

import dagster as dg

from persona_assets.io_manager import JsonIOManager
from resources.llm import CpuLLM, GpuLLM


def resources_for_environment(env: dict[str, str] | None = None) -> dict:
    env = dict(os.environ if env is None else env)
    kind = env.get("PERSONA_RESOURCES", "cpu")
    model = env.get("PERSONA_MODEL", "embedded")
    options = {"model": model}
    if env.get("PERSONA_DTYPE"):
        options["dtype"] = env["PERSONA_DTYPE"]
    if kind == "gpu":
        llm = GpuLLM(**options)
    elif kind == "cpu":
        llm = CpuLLM(**options)
    else:
        raise ValueError(f"PERSONA_RESOURCES must be 'cpu' or 'gpu', got {kind!r}")
    return {"llm": llm, "io_manager": JsonIOManager()}


def gpu_shards_for_environment(env: dict[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    value = env.get("PERSONA_GPU_SHARDS", "1")
    try:
        shards = int(value)
    except ValueError:
        shards = 0
    if shards < 1:
        raise ValueError(f"PERSONA_GPU_SHARDS must be a positive integer, got {value!r}")
    return shards


def executor_config(n_shards: int = 1) -> dict:
    """Multiprocess executor settings: each step its own process (frees GPU memory reliably).

    Model steps tagged device=gpu (generations, cosine, divergence_matrices) run one at a time;
    the K teacher-forcing shards (device=gpu_shard) run side by side, at most one per
    `cuda_device` tag value, i.e. one per GPU.
    """
    return {
        "max_concurrent": max(2, n_shards + 1),
        "tag_concurrency_limits": [
            {"key": "device", "value": "gpu", "limit": 1},
            {"key": "device", "value": "gpu_shard", "limit": n_shards},
            {"key": "cuda_device", "value": {"applyLimitPerUniqueValue": True}, "limit": 1},
        ],
    }


def multi_gpu_executor(n_shards: int = 1) -> dg.ExecutorDefinition:
    return dg.multiprocess_executor.configured(executor_config(n_shards))
