"""Materialize the graph (or only its analysis half) on a model in a process of its own.

Used by tests that need a second OS process: a run under another hash seed, or two runs writing
one data directory at once. Usage:
  python -m tests.graph_runner MODEL_DIR LEAKAGE_PATH {all,analysis} [N_BOOTSTRAP]
with PERSONA_DATA_DIR / PERSONA_FIGURES_DIR in the environment. Exit status 0 when the run succeeds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import dagster as dg

ANALYSIS = ["analysis_inputs", "cosine_precheck", "leakage_correlations", "kill_gate_verdicts", "figures"]


def run(model_dir: str, leakage: str, part: str, run_dir: Path, n_bootstrap: int | None = None) -> bool:
    from persona_assets.checks import all_checks
    from persona_assets.definitions import all_assets
    from persona_assets.environment import storage_resources
    from resources.llm import CpuLLM
    from tests.test_graph import run_config

    config = run_config(run_dir, leakage_rates={"config": {"leakage_path": leakage}})
    if n_bootstrap is not None:  # another setting, so that the run writes other content
        config.ops["leakage_correlations"] = {"config": {"n_bootstrap": n_bootstrap}}
        config.ops["cosine_precheck"] = {"config": {"n_bootstrap": n_bootstrap}}
    selection = None
    if part == "analysis":
        selection = dg.AssetSelection.assets(*ANALYSIS)
        config = dg.RunConfig(ops={k: v for k, v in config.ops.items() if k in ANALYSIS})
    result = dg.materialize(
        [*all_assets, *all_checks],
        resources={"llm": CpuLLM(model=model_dir), **storage_resources()},
        run_config=config,
        selection=selection,
        raise_on_error=False,
    )
    return result.success


if __name__ == "__main__":
    model_dir, leakage, part = sys.argv[1:4]
    n_bootstrap = int(sys.argv[4]) if len(sys.argv) > 4 else None
    sys.exit(0 if run(model_dir, leakage, part, Path.cwd(), n_bootstrap) else 1)
