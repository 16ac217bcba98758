"""Every step of a run as a Dask task: dagster-dask's executor, with dynamic shards and a shared-storage check.

dagster-dask's `DaskExecutor` submits the whole plan up front, level by level, so it cannot run
the steps a DynamicOut creates at run time (dagster-io/dagster#9785: the teacher-forcing shards
are such steps). `PersonaDaskExecutor` keeps its cluster set-up (`cluster: local | existing |
slurm | pbs | …`, the same config) and its per-step task (`query_on_dask_worker`), and drives the
plan the way Dagster's own multiprocess executor does: each step is submitted when its inputs
exist, with the run's known state, so the shards resolve. A step's tag
`dagster-dask/resource_requirements` (e.g. {"GPU": 1}) becomes the task's Dask resources, so a
worker started with `--resources GPU=1` runs one model step at a time; CPU steps go to any worker.

Storage every worker sees: values pass between steps as files under the data directory, so before
the first task the run refuses a relative or unwritable data directory, writes a marker there,
and every task first checks that its worker sees that marker (a worker without the shared mount
fails its step with a message naming the host and the path, instead of a missing-input error).
A worker killed mid-step loses only its batch in flight: Dask re-runs the task elsewhere, and the
divergence cache means a re-run scores only what is missing.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import dask.distributed
from dagster import DagsterEvent
from dagster._core.events import EngineEventData
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.plan.active import ActiveExecution
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._utils.error import serializable_error_info_from_exc_info
from dagster_shared.serdes import deserialize_value, serialize_value
from dagster_dask.executor import DaskExecutor, get_dask_resource_requirements, query_on_dask_worker

GPU_RESOURCE = "GPU"
MARKER_NAME = "dask_shared_storage.json"
CLUSTER_CLASSES = {
    "local": ("dask.distributed", "LocalCluster"),
    "ssh": ("dask.distributed", "SSHCluster"),
    "yarn": ("dask_yarn", "YarnCluster"),
    "pbs": ("dask_jobqueue", "PBSCluster"),
    "moab": ("dask_jobqueue", "MoabCluster"),
    "sge": ("dask_jobqueue", "SGECluster"),
    "lsf": ("dask_jobqueue", "LSFCluster"),
    "slurm": ("dask_jobqueue", "SLURMCluster"),
    "oar": ("dask_jobqueue", "OARCluster"),
    "kube": ("dask_kubernetes", "KubeCluster"),
}
POLL_S = 0.5


class SharedStorageError(RuntimeError):
    """The data directory is not storage that the run and every Dask worker share."""


def write_storage_marker(data_dir: str, run_id: str) -> Path:
    """Checks the configured data directory from the run's side and leaves a marker for the workers."""
    path = Path(data_dir).expanduser()
    if not path.is_absolute():
        raise SharedStorageError(
            f"data directory {data_dir!r} is relative: on the dask executor every worker resolves it against its own "
            "working directory. Set PERSONA_DATA_DIR (or resources.results.config.data_dir) to an absolute path on a "
            "filesystem every worker mounts (NFS, Lustre, GPFS, a ReadWriteMany volume)."
        )
    marker = path / "steps" / run_id / MARKER_NAME
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"run_id": run_id, "host": socket.gethostname()}))
    except OSError as exc:
        raise SharedStorageError(
            f"data directory {data_dir!r} is not reachable from the run on {socket.gethostname()}: {exc}"
        ) from exc
    return marker


def check_storage_marker(marker: str, run_id: str) -> None:
    """On a worker: the run's marker must be visible here, or this worker does not share the data directory."""
    try:
        seen = json.loads(Path(marker).read_text())["run_id"]
    except (OSError, ValueError, KeyError):
        seen = None
    if seen != run_id:
        raise SharedStorageError(
            f"Dask worker on host {socket.gethostname()} does not see {marker}, which the run wrote before its first "
            "step: the data directory must be storage every worker sees (mount it at the same path on every node)."
        )


def stoppable_children() -> None:
    """Give the processes this worker starts from now on the default SIGTERM, where the worker ignores it.

    Dagster mirrors each step's output through two `tail -F` processes that it stops with SIGTERM, waiting 30 s
    for each. A child inherits an ignored signal, so on a worker process that ignores SIGTERM (seen on workers a
    nanny had restarted after a crash) every step took a minute longer and left its tails running. Python sets a
    handler from the main thread only, and tasks run on other threads; the disposition belongs to the process,
    so it is set through the C library there.
    """
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN:
        return
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    else:
        ctypes.CDLL(None).signal(signal.SIGTERM, ctypes.c_void_p(0))  # SIG_DFL; Python still reports SIG_IGN


def run_step_on_worker(marker: str, run_id: str, *step_args: Any) -> tuple[str, str]:
    """One Dagster step on this worker: the storage check (for a job with a data directory), then dagster-dask's
    task body."""
    if marker:
        check_storage_marker(marker, run_id)
    stoppable_children()
    try:
        worker = dask.distributed.get_worker().address
    except ValueError:
        worker = f"local:{os.getpid()}"
    # Events go back serialized (Dagster's serdes): Dask cannot size DagsterEvent objects and warns for each.
    return worker, serialize_value(list(query_on_dask_worker(None, *step_args)))


def data_dir_of(plan_context: PlanOrchestrationContext) -> str | None:
    """The run's configured ResultsStore data_dir (env vars resolved), or None for a job without one."""
    from dagster._core.system_config.objects import ResolvedRunConfig

    job_def = plan_context.reconstructable_job.get_definition()
    resources = ResolvedRunConfig.build(job_def, plan_context.run_config).resources
    if "results" not in resources:
        return None
    config = resources["results"].config or {}
    return str(config.get("data_dir", "data"))


class PersonaDaskExecutor(DaskExecutor):
    """dagster-dask's executor, driving the plan step by step so DynamicOut shards run (see module doc)."""

    def _cluster(self, job_name: str) -> tuple[Any, Any]:
        """(what to hand to Client, the cluster object to close or None)."""
        if self.cluster_type == "existing":
            return self.cluster_configuration["address"], None
        if self.cluster_type not in CLUSTER_CLASSES:
            raise ValueError(
                f"dask cluster type must be one of existing, {', '.join(CLUSTER_CLASSES)}; got {self.cluster_type!r}"
            )
        module, name = CLUSTER_CLASSES[self.cluster_type]
        try:
            cluster_class = getattr(__import__(module, fromlist=[name]), name)
        except ImportError as exc:
            raise ImportError(
                f"cluster: {self.cluster_type} needs the package {module.replace('_', '-')} ({exc})"
            ) from exc
        cluster = cluster_class(**self.build_dict(job_name))
        return cluster, cluster

    def execute(self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan) -> Iterator[DagsterEvent]:
        if not plan_context.instance.is_persistent:
            raise SharedStorageError("the dask executor needs a persistent Dagster instance (set DAGSTER_HOME)")
        run_id = plan_context.run_id
        data_dir = data_dir_of(plan_context)
        marker = str(write_storage_marker(data_dir, run_id)) if data_dir is not None else None
        started = time.monotonic()
        with ExitStack() as stack:
            target, cluster = self._cluster(plan_context.job_name)
            if cluster is not None:
                stack.callback(cluster.close)
            client = stack.enter_context(dask.distributed.Client(target))
            workers = client.scheduler_info().get("workers", {})
            yield DagsterEvent.engine_event(
                plan_context,
                f"Dask cluster {client.scheduler.address} ({self.cluster_type}): {len(workers)} workers connected",
                EngineEventData(
                    metadata={
                        "scheduler": client.scheduler.address,
                        "workers": json.dumps({a: w.get("resources", {}) for a, w in workers.items()}),
                        "data_dir": str(data_dir),
                        "seconds_to_connect": time.monotonic() - started,
                    }
                ),
            )
            active = stack.enter_context(ActiveExecution(execution_plan, retry_mode=self.retries))
            yield from self._drive(plan_context, active, client, marker)

    def _drive(self, plan_context, active: ActiveExecution, client, marker: str | None) -> Iterator[DagsterEvent]:
        running: dict[str, Any] = {}
        instance_ref = plan_context.instance.get_ref()
        run_config = plan_context.run_config
        while not active.is_complete or running:
            if active.check_for_interrupts():
                for future in running.values():
                    future.cancel()
                active.mark_interrupted()
                raise DagsterExecutionInterruptedError()
            for step in active.get_steps_to_execute():
                args = (
                    plan_context.reconstructable_job,
                    plan_context.dagster_run,
                    run_config,
                    [step.key],
                    instance_ref,
                    active.get_known_state(),
                )
                running[step.key] = client.submit(
                    run_step_on_worker,
                    marker or "",
                    plan_context.run_id,
                    *args,
                    key=f"{plan_context.job_name}.{step.key}.{plan_context.run_id[:8]}",
                    resources=get_dask_resource_requirements(step.tags),
                    pure=False,
                )
            done = [key for key, future in running.items() if future.done()]
            if not done and running:
                try:  # wake on the first finished task, or now and then to look for interrupts
                    dask.distributed.wait(list(running.values()), timeout=POLL_S, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    pass
                continue
            for key in done:
                yield from self._finish(plan_context, active, key, running.pop(key))
            yield from active.plan_events_iterator(plan_context)

    def _finish(self, plan_context, active: ActiveExecution, key: str, future) -> Iterator[DagsterEvent]:
        step_context = plan_context.for_step(active.get_step_by_key(key))
        try:
            worker, serialized = future.result()
            events = deserialize_value(serialized, as_type=list)
        except Exception:  # the task raised on its worker (storage check), or its worker died too often
            error = serializable_error_info_from_exc_info(sys.exc_info())
            yield DagsterEvent.engine_event(
                step_context,
                f"Dask task for step {key} failed: {error.message.strip()}",
                EngineEventData.engine_error(error),
            )
            failure = self.log_failure_or_retry_event_after_error(step_context, error, active.get_known_state())
            active.handle_event(failure)
            yield failure
        else:
            yield DagsterEvent.engine_event(
                step_context,
                f"step {key} ran on Dask worker {worker}",
                EngineEventData(metadata={"dask_worker": worker}),
            )
            for event in events:
                yield event
                active.handle_event(event)
        active.verify_complete(plan_context, key)


def default_cluster_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """`dask: {}` means a LocalCluster; a LocalCluster's workers each offer one GPU resource unless told otherwise,
    so the model steps (which ask for one) can run on it."""
    cluster = dict(config.get("cluster") or {"local": {}})
    if "local" in cluster:
        local = dict(cluster["local"] or {})
        local.setdefault("resources", {GPU_RESOURCE: 1})
        cluster["local"] = local
    return {**config, "cluster": cluster}
