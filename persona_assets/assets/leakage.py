from pathlib import Path

import dagster as dg

from persona_assets.config import LeakageConfig
from persona_assets.runs.errors import InputError
from persona_assets.inputs.eval_set import EvalSet


@dg.asset(group_name="inputs", kinds={"pandas"}, code_version="2")
def leakage_rates(context: dg.AssetExecutionContext, config: LeakageConfig, eval_set: dict) -> dict:
    """Directed marker-leakage rates (source → target) among this run's personas, an optional user input.

    `leakage_path` names a CSV/JSON of source,target,rate or a folder of per-source marker_eval
    JSON files. With none configured the analysis says plainly that leakage parts are absent.
    Rows naming a persona outside the run are dropped and listed (`dropped`); a file sharing no
    pair with the run fails the step, naming both persona sets.
    """
    if not config.leakage_path:
        context.add_output_metadata({"available": False})
        return {"available": False, "note": "no leakage_path configured: leakage analyses are skipped", "rows": []}
    from persona_assets.inputs.leakage import load_leakage, restrict_to_personas

    path = Path(config.leakage_path)
    personas = EvalSet.from_dict(eval_set).persona_names
    try:
        overlap = restrict_to_personas(load_leakage(path), personas, path)
    except InputError as exc:
        raise dg.Failure(str(exc)) from None
    table = overlap.rows
    dropped = overlap.report()
    if overlap.dropped_pairs:
        context.log.warning(
            f"{path}: {len(overlap.dropped_pairs)} pair(s) dropped, their personas are not in this run: "
            f"{', '.join(overlap.unknown_personas)}"
        )
    context.add_output_metadata(
        {
            "available": True,
            "n_rows": len(table),
            "n_sources": int(table["source"].nunique()),
            "path": config.leakage_path,
            "n_dropped_pairs": dropped["n_dropped_pairs"],
            "unknown_personas": ", ".join(dropped["unknown_personas"]) or "none",
            "personas_without_rates": ", ".join(dropped["personas_without_rates"]) or "none",
        }
    )
    return {
        "available": True,
        "path": config.leakage_path,
        "rows": table[["source", "target", "rate"]].to_dict(orient="records"),
        "dropped": dropped,
    }
