"""A two-asset job under the multiprocess executor (every step in a process of its own) that writes its
run record through ResultsStore, for tests that need a step process to fail.

PERSONA_TEST_FAILING_STEP=b makes asset `b` raise; PERSONA_TEST_UNRECORDABLE=1 also makes Dagster's
own recording of the step's error raise MemoryError in that process, so no step-failure event is
written (what an error message of gigabytes did). Loaded by `dg.reconstructable(record_job)`.
"""

from __future__ import annotations

import os

import dagster as dg

from resources.results import ResultsStore


@dg.asset
def upstream(results: ResultsStore) -> int:
    return 1


@dg.asset
def downstream(results: ResultsStore, upstream: int) -> int:
    if os.environ.get("PERSONA_TEST_FAILING_STEP") == "downstream":
        raise ValueError("downstream fails on purpose")
    return upstream + 1


if os.environ.get("PERSONA_TEST_UNRECORDABLE"):
    import dagster._core.execution.plan.execute_plan as execute_plan

    def _cannot_serialise(*args, **kwargs):
        raise MemoryError("while serialising the step's error")

    execute_plan.step_failure_event_from_exc_info = _cannot_serialise


def record_job() -> dg.JobDefinition:
    data = os.environ["PERSONA_DATA_DIR"]
    defs = dg.Definitions(
        assets=[upstream, downstream],
        jobs=[dg.define_asset_job("record_job")],
        resources={"results": ResultsStore(data_dir=data, figures_dir=os.environ["PERSONA_FIGURES_DIR"])},
        executor=dg.multiprocess_executor,
    )
    return defs.resolve_job_def("record_job")
