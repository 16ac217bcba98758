"""Where a run's results live: one data directory (outputs, caches, alerts) and a figures directory.

  <data_dir>/outputs/<asset>.json|.csv   the value of each asset (what downstream assets load)
  <data_dir>/cache/<kind>/               content-addressed caches (generations, divergences)
  <data_dir>/steps/<run id>/             values passed between the ops of one graph asset
  <figures_dir>/                         PNG + HTML figures

Relative paths are resolved against the working directory when the run starts. The file-level
guarantees (atomic writes, locks around read-merge-write) are in persona_assets.storage.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field


class ResultsStore(dg.ConfigurableResource):
    """The data directory and the figures directory of the runs."""

    data_dir: str = Field("data", description="outputs/, cache/ and alerts live here (relative = to the working directory)")
    figures_dir: str = Field("figures", description="PNG and HTML figures (relative = to the working directory)")

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    @property
    def outputs_path(self) -> Path:
        return self.data_path / "outputs"

    def cache_path(self, kind: str) -> Path:
        return self.data_path / "cache" / kind

    def steps_path(self, run_id: str) -> Path:
        return self.data_path / "steps" / run_id

    def figures_path(self, *parts: str) -> Path:
        return Path(self.figures_dir).expanduser().resolve().joinpath(*parts)
