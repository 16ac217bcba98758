"""The one place that reads the environment, mapping the variables users set onto Dagster config.

Nothing read here changes the shape of the graph: the same assets, checks and keys load on every
machine. A variable that is set becomes a `dg.EnvVar` in the resource's config, so the UI shows
where the value came from and it is read when a run starts, not when the definitions load; a
variable that is not set leaves the resource's own default.

Variable -> what it becomes:

- PERSONA_RESOURCES = cpu (default) / gpu -> the LLM resource class: CpuLLM / GpuLLM
- PERSONA_MODEL, PERSONA_DTYPE, PERSONA_SCORING_DTYPE, PERSONA_MODEL_CACHE, PERSONA_MODEL_FINGERPRINT
  -> the LLM resource's `model`, `dtype`, `scoring_dtype`, `model_cache_dir`, `model_fingerprint`
- PERSONA_DATA_DIR, PERSONA_FIGURES_DIR -> ResultsStore `data_dir`, `figures_dir`
- PERSONA_ALERTS_FILE, PERSONA_ALERT_WEBHOOK_URL, PERSONA_ALERT_WEBHOOK_ATTEMPTS / _TIMEOUT_S / _BACKOFF_S
  -> AlertSinks `jsonl_file`, `webhook_url`, `attempts`, `timeout_s`, `backoff_s` (numbers parsed here: a bad
  one fails loading the definitions, naming the variable)
- PERSONA_GPU_SHARDS = K (default 1) -> the default of `ops.divergence_matrices.config.shards`, and for K > 1
  the default executor mode `multiprocess` (one process per GPU shard)
- PERSONA_EXECUTOR = in_process / multiprocess / dask -> the default executor mode (run config `execution:`
  overrides it; `dask` alone = a LocalCluster)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import dagster as dg

from resources.alert_sinks import AlertSinks
from resources.gpu_llm import GpuLLM
from resources.llm import CpuLLM, LLMResource
from resources.results import ResultsStore

EXECUTOR_MODES = ("in_process", "multiprocess", "dask")


def _environ(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def _from_env(env: Mapping[str, str], fields: Mapping[str, str]) -> dict[str, Any]:
    """Resource config: field -> dg.EnvVar(variable) for each variable that is set (and not empty)."""
    return {field: dg.EnvVar(variable) for field, variable in fields.items() if env.get(variable, "").strip()}


def llm_resource(env: Mapping[str, str] | None = None) -> LLMResource:
    env = _environ(env)
    kind = env.get("PERSONA_RESOURCES", "cpu").strip() or "cpu"
    if kind not in ("cpu", "gpu"):
        raise ValueError(f"PERSONA_RESOURCES must be 'cpu' or 'gpu', got {kind!r}")
    config = _from_env(
        env,
        {
            "model": "PERSONA_MODEL",
            "dtype": "PERSONA_DTYPE",
            "scoring_dtype": "PERSONA_SCORING_DTYPE",
            "model_cache_dir": "PERSONA_MODEL_CACHE",
            "model_fingerprint": "PERSONA_MODEL_FINGERPRINT",
        },
    )
    return (GpuLLM if kind == "gpu" else CpuLLM)(**config)


def results_store(env: Mapping[str, str] | None = None) -> ResultsStore:
    return ResultsStore(
        **_from_env(_environ(env), {"data_dir": "PERSONA_DATA_DIR", "figures_dir": "PERSONA_FIGURES_DIR"})
    )


ALERT_NUMBERS = {
    "attempts": ("PERSONA_ALERT_WEBHOOK_ATTEMPTS", int),
    "timeout_s": ("PERSONA_ALERT_WEBHOOK_TIMEOUT_S", float),
    "backoff_s": ("PERSONA_ALERT_WEBHOOK_BACKOFF_S", float),
}


def alert_sinks(env: Mapping[str, str] | None = None, results: ResultsStore | None = None) -> AlertSinks:
    """Paths and the URL stay dg.EnvVar; numbers are parsed here, so a bad one is named by its variable."""
    from pydantic import ValidationError

    env = _environ(env)
    config = _from_env(env, {"jsonl_file": "PERSONA_ALERTS_FILE", "webhook_url": "PERSONA_ALERT_WEBHOOK_URL"})
    raw = {field: env.get(variable, "").strip() for field, (variable, _) in ALERT_NUMBERS.items()}
    bad = None
    for field, (_, kind) in ALERT_NUMBERS.items():
        try:
            config[field] = kind(raw[field]) if raw[field] else AlertSinks.model_fields[field].default
        except ValueError:
            bad = bad or field
    try:
        if bad is None:
            return AlertSinks(results=results or results_store(env), **config)
    except ValidationError as exc:  # out of the resource's own range (its Field constraints)
        bad = str(exc.errors()[0]["loc"][0])
    variable, kind = ALERT_NUMBERS[bad]
    noun = "an integer" if kind is int else "a finite number"
    bound = AlertSinks.model_fields[bad].description.rsplit("(", 1)[-1].rstrip(")")
    raise ValueError(f"environment variable {variable}={raw[bad]!r}: must be {noun}, {bound}")


def storage_resources(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The resources every run needs besides the model: results store, IO manager, alert sinks."""
    from persona_assets.io_manager import JsonIOManager

    results = results_store(env)
    return {"results": results, "io_manager": JsonIOManager(results=results), "alerts": alert_sinks(env, results)}


def resources(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {"llm": llm_resource(env), **storage_resources(env)}


def default_gpu_shards(env: Mapping[str, str] | None = None) -> int:
    value = _environ(env).get("PERSONA_GPU_SHARDS", "1").strip() or "1"
    try:
        shards = int(value)
    except ValueError:
        shards = 0
    if shards < 1:
        raise ValueError(f"PERSONA_GPU_SHARDS must be a positive integer, got {value!r}")
    return shards


def default_executor_mode(env: Mapping[str, str] | None = None) -> str:
    env = _environ(env)
    mode = env.get("PERSONA_EXECUTOR", "").strip()
    if not mode:
        return "multiprocess" if default_gpu_shards(env) > 1 else "in_process"
    if mode not in EXECUTOR_MODES:
        raise ValueError(f"PERSONA_EXECUTOR must be one of {', '.join(EXECUTOR_MODES)}, got {mode!r}")
    return mode


def data_dir_for_scripts(env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(data dir, figures dir) for command-line helpers outside a run (e.g. the summary)."""
    env = _environ(env)
    defaults = ResultsStore()
    return (env.get("PERSONA_DATA_DIR") or defaults.data_dir, env.get("PERSONA_FIGURES_DIR") or defaults.figures_dir)
