"""The package's structure: no module over 400 lines, no import cycle, no private name imported across modules."""

from pathlib import Path

from tests.conftest import REPO
from tests.structure import problems


def test_the_package_has_no_long_module_no_cycle_and_no_private_import():
    assert problems(REPO, ["persona_assets", "resources"]) == []


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_each_kind_of_problem_is_found(tmp_path):
    """The checker itself: a cycle through an import inside a function, a private import, a long module."""
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg.b import helper\n",
            "pkg/b.py": "def helper():\n    from pkg import a\n    return a\n",
            "pkg/c.py": "from pkg.b import _hidden\n",
            "pkg/long.py": "x = 1\n" * 401,
            "pkg/sub/__init__.py": "from pkg.sub import d\n",
            "pkg/sub/d.py": "from pkg import sub\n",
        },
    )
    found = problems(tmp_path, ["pkg"])
    assert "import cycle: pkg.a <-> pkg.b" in found
    assert "pkg/c.py: imports private _hidden from pkg.b" in found
    assert "pkg/long.py: 401 lines (> 400)" in found
    assert len(found) == 3  # a package __init__ re-exporting its own module is not a cycle


def test_each_subpackage_names_its_public_api_and_loads_it_lazily():
    """Every name a subpackage's __init__ lists resolves to its module's object; the facade imports no module itself."""
    import importlib
    import subprocess
    import sys

    for package in ["measure", "stats", "analysis", "inputs", "runs"]:
        facade = importlib.import_module(f"persona_assets.{package}")
        assert facade.__all__, package
        for name in facade.__all__:
            module = importlib.import_module(f"persona_assets.{package}.{facade._EXPORTS[name]}")
            assert getattr(facade, name) is getattr(module, name), (package, name)
    # lazily: the analysis side loads without torch (the UI and the analysis steps need not import it)
    code = (
        "import sys, persona_assets.measure, persona_assets.analysis.matrices, persona_assets.stats.correlate; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
