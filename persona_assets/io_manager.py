"""The IO manager that keeps every value readable: JSON for dicts, CSV for tables (no pickles).

Each run writes its asset values to <data dir>/runs/<run id>/outputs/<asset key>.json (or .csv for
a pandas table), so results open in pandas or any JSON reader without Dagster, and a run's files
stay traceable to it; the run's completion publishes them as <data dir>/outputs/ (ResultsStore).
Inputs are read from the run's own files when it materialized them, else from the published set.
Values passed between the ops inside one graph asset are small JSON files under the run's steps/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from persona_assets.runs import result_sets
from persona_assets.runs import view_lineage
from persona_assets.runs.storage import read_json, write_csv, write_json
from resources.results import ResultsStore


class JsonIOManager(dg.ConfigurableIOManager):
    """Asset values as <data dir>/outputs/<key>.json (dicts) or .csv (tables)."""

    results: ResultsStore

    def _asset_stem(self, key: dg.AssetKey, run_id: str | None = None) -> Path:
        base = self.results.run_outputs(run_id) if run_id else self.results.outputs_path
        return base / _file_stem(key)

    def _step_path(self, output: dg.OutputContext) -> Path:
        """Where an op output without an asset goes: the same path for its writer and its readers."""
        name = output.name if output.mapping_key is None else f"{output.name}[{output.mapping_key}]"
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in f"{output.step_key}.{name}")
        return self.results.steps_path(output.run_id) / f"{safe}.json"

    def _output_path(self, context: dg.OutputContext, obj: Any) -> Path:
        if context.has_asset_key:
            stem = self._asset_stem(context.asset_key, context.run_id)
            return stem.with_suffix(".csv" if isinstance(obj, pd.DataFrame) else ".json")
        return self._step_path(context)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        path = self._output_path(context, obj)
        if isinstance(obj, pd.DataFrame):
            write_csv(path, obj)
            context.add_output_metadata({"path": dg.MetadataValue.path(str(path)), "rows": len(obj)})
        else:
            write_json(path, obj)
            if context.has_asset_key:
                context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})
        if context.has_asset_key:
            self._record_lineage(context, path)

    def _record_lineage(self, context: dg.OutputContext, path: Path) -> None:
        """Which file of each upstream asset this one was computed from (what load_input reads), by digest:
        publishing keeps the file only next to those same inputs (persona_assets.runs.view_lineage)."""
        inputs = {}
        for dep in context.asset_spec.deps:
            found = self._existing_file(dep.asset_key, context.run_id)
            inputs[_file_stem(dep.asset_key)] = None if found is None else view_lineage.file_digest(found)
        view_lineage.record_output(
            self.results.run_path(context.run_id), _file_stem(context.asset_key), context.step_key, path.name, inputs
        )

    def _existing_file(self, key: dg.AssetKey, run_id: str | None) -> Path | None:
        """The file an input of `key` is read from: the run's own when it materialized it, else the published one."""
        stems = (self._asset_stem(key, run_id), self._asset_stem(key)) if run_id else (self._asset_stem(key),)
        for stem in stems:
            for suffix in (".json", ".csv"):
                if stem.with_suffix(suffix).is_file():
                    return stem.with_suffix(suffix)
        return None

    def load_input(self, context: dg.InputContext) -> Any:
        upstream = context.upstream_output
        if upstream is not None and not upstream.has_asset_key:
            return read_json(self._step_path(upstream))
        found = self._existing_file(context.asset_key, _run_id(context))
        if found is not None:
            return read_json(found) if found.suffix == ".json" else pd.read_csv(found)
        name = context.asset_key.to_user_string()
        withdrawn = result_sets.withdrawn_from_view(self.results.data_path).get(_file_stem(context.asset_key))
        why = ""
        if withdrawn:
            why = f" (withdrawn from the published set by run {withdrawn['withdrawn_by_run']}: {withdrawn['reason']})"
        raise FileNotFoundError(f"{self._asset_stem(context.asset_key)}.json: materialize {name} first{why}")


def _file_stem(key: dg.AssetKey) -> str:
    return "__".join(key.path)


def _run_id(context: dg.InputContext) -> str | None:
    """The running step's run (None when the context is built outside a run)."""
    try:
        return context.step_context.run_id
    except Exception:  # noqa: BLE001 - no step context: read the published set only
        return None
