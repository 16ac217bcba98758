"""The whole graph as a reconstructable job on the tiny model, for runs whose steps leave this process.

Dask workers (and multiprocess children) rebuild the job by importing this module, so everything
it needs comes from the environment they inherit: PERSONA_TEST_MODEL (the model directory) and
PERSONA_DATA_DIR / PERSONA_FIGURES_DIR (read by the storage resources when a step starts).
"""

from __future__ import annotations

import os

import dagster as dg

# The divergence graph asset can be subset: a job that wants all three of its tables names them.
DIVERGENCE_TABLES = ("divergence_matrices", "divergence_per_response", "divergence_per_pair_question")


def _definitions() -> dg.Definitions:
    from persona_assets.checks import all_checks
    from persona_assets.definitions import all_assets
    from persona_assets.environment import storage_resources
    from persona_assets.executor import persona_executor
    from resources.llm import CpuLLM

    return dg.Definitions(
        assets=all_assets,
        asset_checks=all_checks,
        resources={"llm": CpuLLM(model=os.environ["PERSONA_TEST_MODEL"]), **storage_resources()},
        jobs=[
            dg.define_asset_job("persona_graph", selection=dg.AssetSelection.all()),
            dg.define_asset_job(
                "persona_divergences", selection=dg.AssetSelection.assets(*DIVERGENCE_TABLES).upstream()
            ),
        ],
        executor=persona_executor(),
    )


def persona_job() -> dg.JobDefinition:
    """Every asset and check."""
    return _definitions().resolve_job_def("persona_graph")


def divergence_job() -> dg.JobDefinition:
    """The three divergence tables and what they need (eval_set, generations), with their checks."""
    return _definitions().resolve_job_def("persona_divergences")
