"""The one Definitions object: assets, checks, sensors, resources, executor."""

import dagster as dg

from persona_assets.assets.analysis import analysis_inputs, cosine_precheck, kill_gate_verdicts, leakage_correlations
from persona_assets.assets.divergence_matrices import build_divergence_assets
from persona_assets.assets.eval_set import eval_set
from persona_assets.assets.figures import figures
from persona_assets.assets.generations import generations
from persona_assets.assets.leakage import leakage_rates
from persona_assets.assets.legacy import legacy_assets
from persona_assets.assets.persona_cosine import persona_cosine
from persona_assets.checks import all_checks, legacy_checks
from persona_assets.resources_for_env import gpu_shards_for_environment, multi_gpu_executor, resources_for_environment
from persona_assets.sensors import failed_check_alerts

all_assets = [
    eval_set,
    leakage_rates,
    generations,
    persona_cosine,
    *build_divergence_assets(gpu_shards_for_environment()),  # + K shard steps when PERSONA_GPU_SHARDS=K
    analysis_inputs,
    cosine_precheck,
    leakage_correlations,
    kill_gate_verdicts,
    figures,
]

# Model steps (tagged device=gpu) run one at a time: each loads the model in its own process,
# which also frees GPU memory reliably when the step ends. Teacher-forcing shards run one per GPU.
executor = multi_gpu_executor(gpu_shards_for_environment())

defs = dg.Definitions(
    assets=[*all_assets, *legacy_assets],
    asset_checks=[*all_checks, *legacy_checks],
    sensors=[failed_check_alerts],
    resources=resources_for_environment(),
    executor=executor,
)
