"""The one place that picks resources from the environment.

PERSONA_RESOURCES = cpu (default) | gpu; PERSONA_MODEL (default 'embedded'); PERSONA_DTYPE.
"""

from __future__ import annotations

import os

from persona_assets.io_manager import JsonIOManager
from resources.llm import CpuLLM, GpuLLM


def resources_for_environment(env: dict[str, str] | None = None) -> dict:
    env = dict(os.environ if env is None else env)
    kind = env.get("PERSONA_RESOURCES", "cpu")
    model = env.get("PERSONA_MODEL", "embedded")
    options = {"model": model}
    if env.get("PERSONA_DTYPE"):
        options["dtype"] = env["PERSONA_DTYPE"]
    if kind == "gpu":
        llm = GpuLLM(**options)
    elif kind == "cpu":
        llm = CpuLLM(**options)
    else:
        raise ValueError(f"PERSONA_RESOURCES must be 'cpu' or 'gpu', got {kind!r}")
    return {"llm": llm, "io_manager": JsonIOManager()}
