"""The run's executor: one process for the whole run by default, one process per step on request.

In one process (`in_process`, the default) the resources are set up once per run, so the model
loads once and serves generations, persona_cosine and every teacher-forcing shard, and the steps
start without importing torch/transformers/dagster again; the model is freed when the run ends.
`multiprocess` gives every step its own process: what several GPUs working at once need
(`shards` > 1), one shard per GPU. Choose per run in the run config (the Launchpad shows it) —

    execution:
      config:
        multiprocess: {}          # or: in_process: {}

— or per deployment with PERSONA_EXECUTOR / PERSONA_GPU_SHARDS (persona_assets.environment).
Multiprocess runs get concurrency limits unless the run config gives its own: model steps
(tag device=gpu) one at a time, teacher-forcing shards (device=gpu_shard) side by side.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

MODEL_STEP_TAG = {"device": "gpu"}
SHARD_STEP_TAG = {"device": "gpu_shard"}
MAX_PARALLEL_SHARDS = 64  # concurrency cap for shard steps; each shard picks its GPU by index


def default_multiprocess_config() -> dict[str, Any]:
    return {
        "max_concurrent": MAX_PARALLEL_SHARDS + 1,
        "tag_concurrency_limits": [
            {"key": "device", "value": "gpu", "limit": 1},
            {"key": "device", "value": "gpu_shard", "limit": MAX_PARALLEL_SHARDS},
        ],
    }


def _to_dagster_config(config: dict[str, Any]) -> dict[str, Any]:
    if "multiprocess" in config:
        return {"multiprocess": {**default_multiprocess_config(), **(config["multiprocess"] or {})}}
    return {"in_process": config.get("in_process") or {}}


def persona_executor(default_mode: str = "in_process") -> dg.ExecutorDefinition:
    """Dagster's multi_or_in_process executor, defaulting to `default_mode`, with our limits."""
    return dg.multi_or_in_process_executor.configured(
        _to_dagster_config,
        name="persona_executor",
        config_schema=dg.Field(
            dg.Selector({"in_process": dg.Permissive(), "multiprocess": dg.Permissive()}),
            default_value={default_mode: {}},
            description="in_process: the whole run in one process (one model load); multiprocess: a process per step",
        ),
    )
