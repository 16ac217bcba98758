"""The IO manager that keeps every value readable: JSON for dicts, CSV for tables (no pickles).

Asset values go to <data dir>/outputs/<asset key>.json (or .csv for a pandas table), so results
open in pandas or any JSON reader without Dagster. Values passed between the ops inside one graph
asset (shard counts, the shard plan) are small JSON files under <data dir>/steps/<run id>/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from persona_assets.storage import read_json, write_csv, write_json
from resources.results import ResultsStore


class JsonIOManager(dg.ConfigurableIOManager):
    """Asset values as <data dir>/outputs/<key>.json (dicts) or .csv (tables)."""

    results: ResultsStore

    def _asset_stem(self, key: dg.AssetKey) -> Path:
        return self.results.outputs_path / "__".join(key.path)

    def _step_path(self, run_id: str, step_key: str, name: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in f"{step_key}.{name}")
        return self.results.steps_path(run_id) / f"{safe}.json"

    def _output_path(self, context: dg.OutputContext, obj: Any) -> Path:
        if context.has_asset_key:
            return self._asset_stem(context.asset_key).with_suffix(".csv" if isinstance(obj, pd.DataFrame) else ".json")
        name = context.name if context.mapping_key is None else f"{context.name}[{context.mapping_key}]"
        return self._step_path(context.run_id, context.step_key, name)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        path = self._output_path(context, obj)
        if isinstance(obj, pd.DataFrame):
            write_csv(path, obj)
            context.add_output_metadata({"path": dg.MetadataValue.path(str(path)), "rows": len(obj)})
        else:
            write_json(path, obj)
            if context.has_asset_key:
                context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> Any:
        upstream = context.upstream_output
        if upstream is not None and not upstream.has_asset_key:
            name = upstream.name if upstream.mapping_key is None else f"{upstream.name}[{upstream.mapping_key}]"
            return read_json(self._step_path(upstream.run_id, upstream.step_key, name))
        stem = self._asset_stem(context.asset_key)
        if stem.with_suffix(".json").is_file():
            return read_json(stem.with_suffix(".json"))
        if stem.with_suffix(".csv").is_file():
            return pd.read_csv(stem.with_suffix(".csv"))
        raise FileNotFoundError(f"{stem}.json: materialize {context.asset_key.to_user_string()} first")
