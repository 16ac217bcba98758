"""The run's executor: one process for the whole run by default, a process per step, or a Dask cluster.

In one process (`in_process`, the default) the resources are set up once per run, so the model
loads once and serves generations, persona_cosine and every teacher-forcing shard, and the steps
start without importing torch/transformers/dagster again; the model is freed when the run ends.
`multiprocess` gives every step its own process: what several GPUs working at once need
(`shards` > 1), one shard per GPU. Choose per run in the run config (the Launchpad shows it) —

    execution:
      config:
        multiprocess: {}          # or: in_process: {}, or dask: {cluster: {local: {n_workers: 2}}}

— or per deployment with PERSONA_EXECUTOR / PERSONA_GPU_SHARDS (persona_assets.environment).
Multiprocess runs get concurrency limits unless the run config gives its own: model steps
(tag device=gpu) one at a time, teacher-forcing shards (device=gpu_shard) side by side.

`dask` is dagster-dask's executor config as documented (`cluster: local | existing | slurm | pbs
| sge | lsf | oar | moab | ssh | yarn | kube`, each taking its cluster class's arguments); every
step becomes a Dask task, model steps and shards asking for one `GPU` worker resource each
(persona_assets.dask_engine; configs/cluster/dask_*.yaml; docs/cluster.md).
"""

from __future__ import annotations

from typing import Any

import dagster as dg

# What a model step needs from a cluster, as the integrations read it (JSON strings): one `GPU` of a
# Dask worker (dagster-dask), one nvidia.com/gpu in its pod (dagster-k8s's k8s_job_executor).
# Tags only: inert under the in_process and multiprocess modes.
GPU_TASK_TAG = {
    "dagster-dask/resource_requirements": '{"GPU": 1}',
    "dagster-k8s/config": '{"container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}}',
}
MODEL_STEP_TAG = {"device": "gpu", **GPU_TASK_TAG}
SHARD_STEP_TAG = {"device": "gpu_shard", **GPU_TASK_TAG}
from persona_assets.environment import EXECUTOR_MODES as MODES  # noqa: E402  (one list of the modes)

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


def _processed(executor_def: dg.ExecutorDefinition, config: dict[str, Any]) -> dict[str, Any]:
    """`config` validated against `executor_def`'s own schema, its defaults filled in."""
    from dagster._config import process_config

    result = process_config(executor_def.config_schema.config_type, config)
    if not result.success:
        raise dg.DagsterInvalidConfigError(f"execution config for {executor_def.name}", result.errors, config)
    return result.value


def _create(init_context: dg.InitExecutorContext) -> dg.Executor:
    ((mode, given),) = init_context.executor_config.items()
    if mode == "dask":
        from dagster_dask import dask_executor

        from persona_assets.dask_engine import PersonaDaskExecutor, default_cluster_config

        config = _processed(dask_executor, default_cluster_config(given or {}))
        ((cluster_type, cluster_config),) = config["cluster"].items()
        return PersonaDaskExecutor(cluster_type, cluster_config)
    inner = dg.multi_or_in_process_executor
    config = _processed(inner, _to_dagster_config({mode: given}))
    return inner.executor_creation_fn(
        dg.InitExecutorContext(
            job=init_context.job, executor_def=inner, executor_config=config, instance=init_context.instance
        )
    )


def _requirements(config: dict[str, Any]) -> list:
    """A reconstructable job and a persistent instance, except in one process."""
    return [] if "in_process" in config else list(dg.multiple_process_executor_requirements())


def persona_executor(default_mode: str = "in_process") -> dg.ExecutorDefinition:
    """in_process / multiprocess (Dagster's multi_or_in_process executor, with our limits) or dask, by run config."""
    return dg.ExecutorDefinition(
        name="persona_executor",
        config_schema=dg.Field(
            dg.Selector({mode: dg.Permissive() for mode in MODES}),
            default_value={default_mode: {}},
            description=(
                "in_process: the whole run in one process (one model load); multiprocess: a process per step; "
                "dask: every step a Dask task (dagster-dask's config: cluster: local | existing | slurm | pbs | …)"
            ),
        ),
        executor_creation_fn=_create,
        requirements=_requirements,
    )
