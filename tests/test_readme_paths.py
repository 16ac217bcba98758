"""Every repository path the README and the docs name exists, and the README stays a README.

A name counts as a repository path when it is written in backticks or as a link target, and contains a '/'
or ends in .py/.md/.yaml/.toml, and its first component is an entry of the repository's top level (or, for a
bare file name, the name of a tracked file). Names relative to the data directory (`runs/<run id>/`,
`cache/divergences/`), hub ids and the reader's own paths (`/models/...`) are not repository paths. A
`<placeholder>` or a `*` is a glob that must match at least one file; `{a,b}` is expanded. Folders that exist
only after a run are listed in GENERATED, by name.
"""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess

import pytest

from tests.conftest import REPO

README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
MAX_README_LINES = 250

# Written by a run, by `make`, by the tests or by the user; never in a fresh clone.
GENERATED = (
    "data/outputs/",
    "data/runs/",
    "data/views/",
    "data/cache/",
    "data/alerts.jsonl",
    ".dagster_home/",
    "figures/legacy/",
    "figures/*.png",
    "figures/*.html",
    "test-artifacts/",
    ".venv/",
)
# Bare file names the docs use for a file the reader writes, not one of the repository's.
READERS_FILES = ("my_dir.yaml",)

SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
PATHLIKE = re.compile(r"^[\w.<>*{},/ -]+$")


def tracked() -> list[str]:
    return subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()


def expand_braces(name: str) -> list[str]:
    match = re.search(r"\{([^{}]*)\}", name)
    if not match:
        return [name]
    return [
        expanded
        for part in match.group(1).split(",")
        for expanded in expand_braces(name[: match.start()] + part + name[match.end() :])
    ]


def named_paths(text: str, link_base: str, top_level: set[str], basenames: set[str]) -> list[str]:
    """The repository paths a page's text names, relative to the repository root; its links are relative
    to `link_base` (the page's folder, relative to the root)."""
    names = [(span.split("::")[0], "") for span in SPAN.findall(text)]
    names += [(target, link_base) for target in LINK.findall(text) if "://" not in target]
    found = []
    for name, base in names:
        name = name.strip().rstrip(".,;:")
        if not PATHLIKE.match(name) or " " in name.replace("<run id>", "<run_id>"):
            continue
        if "/" not in name and not name.endswith((".py", ".md", ".yaml", ".toml")):
            continue
        if name.startswith("/") or name.startswith("$"):
            continue
        relative = os.path.normpath(os.path.join(base, name)) + ("/" if name.endswith("/") else "")
        first = relative.split("/")[0]
        if "/" not in name and not base:  # a bare file name in backticks: one the repository tracks
            if name in READERS_FILES:
                continue
            assert name in basenames, f"`{name}` is the name of no tracked file"
            continue
        if first in top_level:
            found.append(relative)
    return found


def generated(relative: str) -> bool:
    """Whether the path lies in (or is) one of the GENERATED folders or files, `*` a wildcard."""
    return any(
        fnmatch.fnmatch(relative, entry)
        if "*" in entry
        else relative == entry.rstrip("/") or relative.startswith(entry)
        for entry in GENERATED
    )


def exists(relative: str) -> bool:
    if generated(relative):
        return True
    for name in expand_braces(relative):
        pattern = re.sub(r"<[^>]*>", "*", name).rstrip("/")
        if not (list(REPO.glob(pattern)) if "*" in pattern else (REPO / pattern).exists()):
            return False
    return True


def test_every_path_the_readme_and_the_docs_name_exists():
    files = tracked()
    top_level = {name.split("/")[0] for name in files}
    basenames = {name.rsplit("/", 1)[-1] for name in files}
    checked = []
    for page in PAGES:
        link_base = page.parent.relative_to(REPO).as_posix().replace(".", "")
        for relative in named_paths(page.read_text(), link_base, top_level, basenames):
            assert exists(relative), f"{page.relative_to(REPO)} names `{relative}`, which does not exist"
            checked.append(relative)
    # The check reads what it should: the README's own links and the layout's packages among them.
    assert {"docs/bad-input.md", "docs/performance.md", "docs/testing.md", "docs/reanalysis.md"} <= set(checked)
    assert len(checked) > 100, len(checked)


def test_a_path_that_does_not_exist_is_caught():
    text = "See `persona_assets/no_such_module.py`, [x](nowhere.md), `data/outputs/x.json` and `cache/divergences/`.\n"
    files = tracked()
    names = named_paths(text, "docs", {n.split("/")[0] for n in files}, {n.rsplit("/", 1)[-1] for n in files})
    assert names == ["persona_assets/no_such_module.py", "data/outputs/x.json", "docs/nowhere.md"]
    assert [exists(name) for name in names] == [False, True, False]
    assert not exists("benchmarks/results/no_such_<gpu>.txt")
    assert exists("benchmarks/results/gpu_tests_<gpu>.txt")
    assert exists("tests/{measure,stats}") and not exists("tests/{measure,no_such_package}")
    assert not exists("data/outputs_elsewhere/x.json") and exists("figures/js_heatmap.png")


@pytest.mark.parametrize("name", ["README.md", *(p.name for p in PAGES[1:])])
def test_no_page_points_outside_the_repository(name):
    assert "../shared" not in (REPO / ("README.md" if name == "README.md" else f"docs/{name}")).read_text()


def test_the_readme_is_short_and_links_each_doc_it_moved_text_to():
    text = README.read_text()
    assert len(text.splitlines()) <= MAX_README_LINES
    for doc in ("performance", "testing", "reanalysis", "bad-input", "outputs", "statistics", "method", "alerts"):
        assert f"](docs/{doc}.md)" in text, doc
    assert "make job" in text and "make test" in text
