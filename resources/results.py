"""Where results live: one data directory (runs, the published outputs, caches, alerts) and a figures directory.

  <data_dir>/runs/<run id>/    everything a run wrote: outputs/, figures/, steps/, run.json (its status)
  <data_dir>/outputs/          the latest complete set (a link into views/, swapped when a run completes)
  <data_dir>/cache/<kind>/     content-addressed caches shared by every run (generations, divergences)
  <figures_dir>/               the figures of the latest complete run

A run's files go to its own folder; when the run ends with every planned step succeeded, the
resource's teardown publishes them (persona_assets.runs.result_sets). A failed run leaves
outputs/ and the figures directory as they were. Relative paths resolve against the working
directory when the run starts.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from persona_assets.runs import result_sets
from persona_assets.runs import view_lineage
from persona_assets.runs.storage import read_json, write_csv, write_json


class ResultsStore(dg.ConfigurableResource):
    """The data directory and the figures directory of the runs."""

    data_dir: str = Field(
        "data", description="runs/, outputs/, cache/ and alerts live here (relative = to the working directory)"
    )
    figures_dir: str = Field(
        "figures", description="the figures of the latest complete run (relative = to the working directory)"
    )

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    @property
    def outputs_path(self) -> Path:
        """The published set (read it; runs write to `run_outputs`)."""
        return self.data_path / result_sets.OUTPUTS

    def run_path(self, run_id: str) -> Path:
        return result_sets.run_dir(self.data_path, run_id)

    def run_outputs(self, run_id: str) -> Path:
        return self.run_path(run_id) / result_sets.OUTPUTS

    def run_figures(self, run_id: str, *parts: str, owner: dg.AssetKey | None = None) -> Path:
        """The run's figures folder (its `parts` subfolder); `owner` draws there: its figures leave the
        figures directory when its file is withdrawn from the published set."""
        if owner is not None:
            view_lineage.record_figures(self.run_path(run_id), "__".join(owner.path), "/".join(parts))
        return self.run_path(run_id).joinpath("figures", *parts)

    def run_side_file(self, run_id: str, owner: dg.AssetKey, name: str) -> Path:
        """Where asset `owner` writes another file of its own into the run's outputs (published, withdrawn with it)."""
        view_lineage.record_side_file(self.run_path(run_id), "__".join(owner.path), name)
        return self.run_outputs(run_id) / name

    def record_unselected(self, run_id: str, step: str, key: dg.AssetKey, value: Any) -> None:
        """An op computed `key` next to its selected outputs but does not write it: keep its bytes
        (as they would be published) so the outputs it does write are published only next to them."""
        stem, table = "__".join(key.path), isinstance(value, pd.DataFrame)
        path = view_lineage.computed_file(self.run_path(run_id), stem, ".csv" if table else ".json")
        write_csv(path, value) if table else write_json(path, value)
        view_lineage.record_computed(self.run_path(run_id), stem, step, path.name)

    def steps_path(self, run_id: str) -> Path:
        return self.run_path(run_id) / "steps"

    def cache_path(self, kind: str) -> Path:
        return self.data_path / "cache" / kind

    def figures_path(self, *parts: str) -> Path:
        return Path(self.figures_dir).expanduser().resolve().joinpath(*parts)

    def start_run(self, run_id: str, run_config: dict[str, Any]) -> None:
        result_sets.start_run(self.data_path, run_id, run_config)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """A run's folder and manifest (its config) exist from its first step: even a killed run is listed."""
        run = context.run
        if run is not None:
            self.start_run(run.run_id, dict(run.run_config))

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """At the end of the run (in one process) or of each step (multiprocess): publish once complete."""
        run_id = context.run.run_id if context.run is not None else None
        if not run_id or context.instance is None or not self.run_path(run_id).is_dir():
            return
        complete, failed = run_outcome(context.instance, run_id, torn_down_in=os.getpid())
        # This store is torn down twice per run (as itself and inside the IO manager): say "published" once.
        manifest = self.run_path(run_id) / result_sets.MANIFEST
        decided = (result_sets.COMPLETE, result_sets.FAILED)
        decided_before = manifest.is_file() and read_json(manifest).get("status") in decided
        status = result_sets.finish_run(
            self.data_path, run_id, complete=complete, failed_steps=failed, figures_dir=self.figures_path()
        )
        if status == result_sets.COMPLETE and context.log and not decided_before:
            context.log.info(
                f"results of run {run_id} published: {self.outputs_path} (kept in {self.run_path(run_id)})"
            )
            for asset, why in sorted(result_sets.withdrawn_from_view(self.data_path, run_id).items()):
                context.log.warning(
                    f"{', '.join(why['files'])} (run {why['run_id']}) withdrawn from {self.outputs_path}: "
                    f"{why['reason']}; materialize {asset.replace('__', '/')} again to bring it back"
                )


def _inside_a_dask_task() -> bool:
    # A Dask worker runs several steps side by side in the threads of one process: there, a step
    # started in this process and not yet ended may be another step still running.
    if "distributed" not in sys.modules:
        return False
    try:
        sys.modules["distributed"].get_worker()
    except (AttributeError, ValueError):
        return False
    return True


def run_outcome(
    instance: dg.DagsterInstance, run_id: str, *, torn_down_in: int | None = None
) -> tuple[bool, list[str]]:
    """(every planned step succeeded, the steps that failed or were skipped), from the run's event log.

    With `torn_down_in` (the id of the process whose resources are being torn down), a failure that
    Dagster could not record still counts: a step that started in that process and has no end event
    died with it (e.g. a MemoryError while Dagster serialised its error), and when that process is the
    one that started the run (the in-process executor, whose resources are torn down once, when the
    run ends), every planned step that did not succeed is counted as failed.
    """
    step_ends = {dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.STEP_SKIPPED}
    kinds = {*step_ends, dg.DagsterEventType.STEP_START, dg.DagsterEventType.RUN_START}
    records = [r.event_log_entry for r in instance.get_records_for_run(run_id, of_type=kinds).records]
    ended = [e for e in records if e.dagster_event_type in step_ends]
    succeeded = {e.step_key for e in ended if e.dagster_event_type == dg.DagsterEventType.STEP_SUCCESS}
    failed = {e.step_key for e in ended} - succeeded
    run = instance.get_run_by_id(run_id)
    planned: list[str] = []
    if run is not None and run.execution_plan_snapshot_id:
        snapshot = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
        # Mapped steps ("op[?]") resolve at run time; the step that collects them is planned by name.
        planned = [key for key in snapshot.step_keys_to_execute if not key.endswith("[?]")]
    complete = not failed and bool(planned) and set(planned) <= succeeded
    if torn_down_in is not None and not complete and not _inside_a_dask_task():
        pids = {e.dagster_event_type: e.dagster_event.pid for e in records if e.dagster_event is not None}
        started_here = {
            e.step_key
            for e in records
            if e.dagster_event_type == dg.DagsterEventType.STEP_START and e.dagster_event.pid == torn_down_in
        }
        failed |= started_here - {e.step_key for e in ended}
        if pids.get(dg.DagsterEventType.RUN_START) == torn_down_in:
            failed |= set(planned) - succeeded
    return complete, sorted(failed)
