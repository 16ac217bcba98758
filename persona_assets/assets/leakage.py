from pathlib import Path

import dagster as dg

from persona_assets.config import LeakageConfig


@dg.asset(group_name="inputs", kinds={"pandas"}, code_version="1")
def leakage_rates(context: dg.AssetExecutionContext, config: LeakageConfig) -> dict:
    """Directed marker-leakage rates (source → target), an optional user input.

    `leakage_path` names a CSV/JSON of source,target,rate or a folder of per-source marker_eval
    JSON files. With none configured the analysis says plainly that leakage parts are absent.
    """
    if not config.leakage_path:
        context.add_output_metadata({"available": False})
        return {"available": False, "note": "no leakage_path configured: leakage analyses are skipped", "rows": []}
    from persona_assets.core.leakage import load_leakage

    table = load_leakage(Path(config.leakage_path))
    context.add_output_metadata(
        {"available": True, "n_rows": len(table), "n_sources": int(table["source"].nunique()), "path": config.leakage_path}
    )
    return {
        "available": True,
        "path": config.leakage_path,
        "rows": table[["source", "target", "rate"]].to_dict(orient="records"),
    }
