"""Shared engines for the GPU tests (run them with `.ci/gpu_tests.sh` on the GPU machine)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def engines():
    """Random-weight Qwen2 engines on CUDA by dtype, built once per session (the same weights)."""
    from tests.gpu.token_engine import random_qwen2_engine

    built: dict[str, object] = {}

    def get(dtype: str):
        if dtype not in built:
            built[dtype] = random_qwen2_engine(dtype)
        return built[dtype]

    return get
