"""Reading an in-process run's result by asset, whatever op inside a graph asset produced it."""

from __future__ import annotations

import dagster as dg


def materializations(result, asset: str) -> list[dg.AssetMaterialization]:
    key = dg.AssetKey(asset.split("/"))
    return [
        e.event_specific_data.materialization for e in result.get_asset_materialization_events() if e.asset_key == key
    ]


def metadata(result, asset: str) -> dict:
    """The metadata values of the asset's one materialization in the run."""
    [materialization] = materializations(result, asset)
    return {k: v.value for k, v in materialization.metadata.items()}


def started_steps(result) -> set[str]:
    """Step keys that started; a graph asset's ops also count under the asset's name."""
    keys = {e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START}
    return keys | {key.split(".")[0] for key in keys}
