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
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.b import helper\n",
        "pkg/b.py": "def helper():\n    from pkg import a\n    return a\n",
        "pkg/c.py": "from pkg.b import _hidden\n",
        "pkg/long.py": "x = 1\n" * 401,
        "pkg/sub/__init__.py": "from pkg.sub import d\n",
        "pkg/sub/d.py": "from pkg import sub\n",
    })
    found = problems(tmp_path, ["pkg"])
    assert "import cycle: pkg.a <-> pkg.b" in found
    assert "pkg/c.py: imports private _hidden from pkg.b" in found
    assert "pkg/long.py: 401 lines (> 400)" in found
    assert len(found) == 3  # a package __init__ re-exporting its own module is not a cycle
