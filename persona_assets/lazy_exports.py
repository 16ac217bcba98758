"""One lazy facade for the science subpackages: a name is imported from its module on first use.

Each subpackage's `__init__` lists its public names (name → module) and sets
`__getattr__ = lazy_getattr(__name__, _EXPORTS)`, so `from persona_assets.analysis import X` works
without importing the whole subpackage (the analysis side loads without torch). Plain Python.
"""

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level `__getattr__` for `package` that imports `exports[name]` when `name` is asked for."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
