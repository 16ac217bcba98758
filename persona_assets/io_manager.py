"""The IO manager that keeps asset values as readable JSON under <data dir>/outputs/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg

from persona_assets.storage import outputs_dir, read_json, write_json


class JsonIOManager(dg.ConfigurableIOManager):
    """Stores each asset's value as <data dir>/outputs/<asset key>.json (no pickles)."""

    base_dir: str = ""

    def _path(self, key: dg.AssetKey) -> Path:
        base = Path(self.base_dir).resolve() if self.base_dir else outputs_dir()
        return base / ("__".join(key.path) + ".json")

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        path = self._path(context.asset_key)
        write_json(path, obj)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> Any:
        path = self._path(context.upstream_output.asset_key if context.upstream_output else context.asset_key)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: materialize {context.asset_key.to_user_string()} first")
        return read_json(path)
