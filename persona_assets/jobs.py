"""The scenarios as named jobs: pick "ci", "demo", "full_study" or "reanalyse_study" in the UI.

Each job's settings default to the committed YAML of its scenario (configs/): the Launchpad opens
with it filled in, still editable, so nobody pastes YAML. The job's config mapping checks every
setting against its range when the run is launched, so a Launchpad run with a value out of range is
refused before any run exists (Dagster's config schema checks types, unknown keys and the choices
of a setting as you type, not numeric ranges). The CLI equivalent of a job is
`dagster asset materialize -m persona_assets.definitions --select ... -c configs/<file>`, whose
settings are checked by the run's first step instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from persona_assets.run_config_validation import config_classes_of_nodes, run_config_problems

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
# Run-config sections other than ops: passed on as given (the job's own schema checks them after the mapping).
PASSED_ON = ("resources", "execution", "loggers")


class SettingsRefused(dg.DagsterError):
    """A launch refused on its settings; the message lists each setting, its range and the value given."""


def scenario_config(file_name: str) -> dict:
    """The scenario's YAML as a run-config dict."""
    return yaml.safe_load((CONFIGS / file_name).read_text(encoding="utf-8"))


def _ops_schema(node_defs: Sequence[dg.NodeDefinition], scenario_ops: Mapping[str, Any]) -> dict[str, dg.Field]:
    """Each node's own config schema, its defaults those of the scenario where it sets them."""
    fields = {}
    for node_def in node_defs:
        config_field = node_def.config_field
        if config_field is None:
            continue
        settings = (scenario_ops.get(node_def.name) or {}).get("config")
        inner = (
            dg.Field(config_field.config_type, default_value=settings, description=config_field.description)
            if settings is not None
            else config_field
        )
        node_field = (
            dg.Field({"config": inner}, is_required=False, default_value={"config": settings})
            if settings is not None
            else dg.Field({"config": inner}, is_required=False)
        )
        fields[node_def.name] = node_field
    return fields


def launch_checked_config(node_defs: Sequence[dg.NodeDefinition], scenario: Mapping[str, Any]) -> dg.ConfigMapping:
    """The job's settings, defaulting to `scenario`, checked against their ranges when a run is launched.

    The mapping runs in the code server as the run is launched, before the run is created: a setting
    out of range raises `SettingsRefused`, which the Launchpad shows instead of starting a run.
    """
    classes = config_classes_of_nodes(node_defs)
    scenario_ops = scenario.get("ops") or {}
    schema = {
        "ops": dg.Field(_ops_schema(node_defs, scenario_ops), is_required=False, default_value=scenario_ops),
        **{
            section: (
                dg.Field(dg.Permissive(), is_required=False, default_value=scenario[section])
                if section in scenario
                else dg.Field(dg.Permissive(), is_required=False)
            )
            for section in PASSED_ON
        },
    }

    def check_then_pass_on(config: dict) -> dict:
        problems = run_config_problems(config, classes=classes)
        if problems:
            raise SettingsRefused(
                "run refused, nothing was started: fix these settings and launch again:\n- " + "\n- ".join(problems)
            )
        return {key: value for key, value in config.items() if value or key == "ops"}

    return dg.ConfigMapping(config_fn=check_then_pass_on, config_schema=schema, receive_processed_config_values=False)


def _node_defs(assets: Sequence[dg.AssetsDefinition]) -> list[dg.NodeDefinition]:
    return [asset.node_def for asset in assets if isinstance(asset, dg.AssetsDefinition)]


def scenario_jobs(model_assets: list, legacy_assets: list) -> list[dg.UnresolvedAssetJobDefinition]:
    """One job per scenario: this run's graph (and its checks) or the re-analysis of earlier results."""
    parts = {"model": model_assets, "legacy": legacy_assets}
    return [
        dg.define_asset_job(
            name,
            selection=dg.AssetSelection.assets(*parts[part]),
            config=launch_checked_config(_node_defs(parts[part]), scenario_config(file_name)),
            description=description,
        )
        for name, (file_name, part, description) in SCENARIOS.items()
    ]
