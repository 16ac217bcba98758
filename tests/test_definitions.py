"""The definitions load, list every asset and check, and need neither torch nor vllm to load."""

from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg

from tests.conftest import REPO

EXPECTED_ASSETS = {
    "eval_set",
    "leakage_rates",
    "generations",
    "persona_cosine",
    "divergence_matrices",
    "divergence_per_response",
    "divergence_per_pair_question",
    "layer_divergences",
    "divergence_profiles",
    "persona_baseline",
    "analysis_inputs",
    "cosine_precheck",
    "leakage_correlations",
    "kill_gate_verdicts",
    "figures",
}


def test_definitions_are_loadable():
    from persona_assets.definitions import defs

    dg.Definitions.validate_loadable(defs)
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert EXPECTED_ASSETS <= keys


def test_every_asset_has_description_group_and_kinds():
    from persona_assets.definitions import all_assets

    for asset in all_assets:
        spec = next(iter(asset.specs))
        assert spec.description, spec.key
        assert spec.group_name and spec.group_name != "default", spec.key
        assert spec.kinds, spec.key


def _load_in_subprocess(env_extra: dict[str, str]) -> str:
    code = (
        "import sys; import persona_assets.definitions as d; "
        "print(type(d.defs.resources['llm']).__name__, 'torch' in sys.modules, 'vllm' in sys.modules, "
        "'scipy.stats' in sys.modules, 'altair' in sys.modules)"
    )
    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_cpu_definitions_load_without_torch_or_vllm_imported():
    # Nor scipy.stats or altair: loading the definitions starts every CLI run and every step process.
    assert _load_in_subprocess({"PERSONA_RESOURCES": "cpu"}) == "CpuLLM False False False False"


def test_gpu_definitions_load_without_torch_or_vllm_imported():
    assert _load_in_subprocess({"PERSONA_RESOURCES": "gpu"}) == "GpuLLM False False False False"
