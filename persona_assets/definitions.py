"""The one Definitions object: assets, checks, sensors, resources, executor.

The graph is the same on every machine; the environment only picks resources and defaults
(persona_assets.environment), and the executor runs the whole run in one process unless the run
config or PERSONA_EXECUTOR / PERSONA_GPU_SHARDS asks for a process per step (persona_assets.executor).
"""

import atexit
import gc

import dagster as dg

from persona_assets import environment
from persona_assets.assets.analysis import analysis_inputs, cosine_precheck, kill_gate_verdicts, leakage_correlations
from persona_assets.assets.divergence_matrices import divergence_matrices
from persona_assets.assets.eval_set import eval_set
from persona_assets.assets.figures import figures
from persona_assets.assets.generations import generations
from persona_assets.assets.leakage import leakage_rates
from persona_assets.assets.legacy import legacy_assets
from persona_assets.assets.persona_baseline import persona_baseline
from persona_assets.assets.persona_cosine import persona_cosine
from persona_assets.assets.token_profiles import token_profiles
from persona_assets.checks import all_checks, legacy_checks
from persona_assets.executor import persona_executor
from persona_assets.jobs import scenario_jobs
from persona_assets.sensors import failed_check_alerts

all_assets = [
    eval_set,
    leakage_rates,
    generations,
    persona_cosine,
    divergence_matrices,  # with divergence_per_response and divergence_per_pair_question
    persona_baseline,
    token_profiles,  # layer_divergences and divergence_profiles
    analysis_inputs,
    cosine_precheck,
    leakage_correlations,
    kill_gate_verdicts,
    figures,
]

defs = dg.Definitions(
    assets=[*all_assets, *legacy_assets],
    asset_checks=[*all_checks, *legacy_checks],
    jobs=scenario_jobs(all_assets, legacy_assets),
    sensors=[failed_check_alerts],
    resources=environment.resources(),
    executor=persona_executor(environment.default_executor_mode()),
)

# Garbage collection walks every live object, and after the imports above (and, in a step, torch's and
# transformers') that is millions of long-lived ones: a full collection of them takes about 1.6 s on two cores.
# Frozen here, later collections during the run skip them, and so does the interpreter's last one at exit, which
# otherwise outlasts the rest of the exit (every file of the run is written and closed by then).
gc.freeze()
atexit.register(gc.freeze)
