"""The scenarios as named jobs: pick "ci", "demo", "full_study" or "reanalyse_study" in the UI.

Each job is the committed YAML of its scenario (configs/) as the job's default run config: the
Launchpad opens with it filled in, still editable, so nobody pastes YAML. The CLI equivalent of a
job is `dagster asset materialize -m persona_assets.definitions --select ... -c configs/<file>`.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import yaml

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# job name -> (scenario file, what it runs, the description the UI shows)
SCENARIOS = {
    "ci": ("ci.yaml", "model", "Smallest meaningful run: 4 personas × 2 questions, 16-token responses."),
    "demo": ("demo.yaml", "model", "Demo: every persona × 4 questions, 48-token responses."),
    "full_study": ("full_12x20.yaml", "model", "The full study: 12 personas × 20 questions, 512-token responses."),
    "reanalyse_study": (
        "reanalyze_legacy.yaml",
        "legacy",
        "Re-analyse the published study bundled in data/reference_study (no model): same analyses, same kill gates.",
    ),
}


def scenario_config(file_name: str) -> dict:
    """The scenario's YAML as a run-config dict."""
    return yaml.safe_load((CONFIGS / file_name).read_text(encoding="utf-8"))


def scenario_jobs(model_assets: list, legacy_assets: list) -> list[dg.UnresolvedAssetJobDefinition]:
    """One job per scenario: this run's graph (and its checks) or the re-analysis of earlier results."""
    selections = {"model": dg.AssetSelection.assets(*model_assets), "legacy": dg.AssetSelection.assets(*legacy_assets)}
    return [
        dg.define_asset_job(
            name, selection=selections[part], config=scenario_config(file_name), description=description
        )
        for name, (file_name, part, description) in SCENARIOS.items()
    ]
