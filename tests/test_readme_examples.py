"""Every shell example of the README (and of the docs it moved examples to) works as written.

The ```bash blocks of the README and of `EXAMPLE_DOCS` are parsed. An example that runs on a CPU in seconds runs here as
written (a temp DAGSTER_HOME / data / figures directory; paths in it that stand for the reader's own
are replaced by real ones); an example that needs a GPU or minutes has the config files it names
merged in its exact `-c` order and validated by Dagster against the definitions, and by the run's
own range checks. The re-analysis example itself runs in
tests/test_reanalysis.py::test_reanalysis_config_materializes_reference_from_the_cli, which takes its
command line from here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from persona_assets.runs import result_sets
from tests.conftest import REFERENCE_STUDY, REPO
from tests.shared_runs import materialize_command

BASH_BLOCK = re.compile(r"```bash\n(.*?)```", re.S)
MATERIALIZE = "dagster asset materialize"
# The README keeps the GPU example; the re-analysis and SLURM examples moved to these docs, which it links.
EXAMPLE_DOCS = ("README.md", "docs/reanalysis.md", "docs/cluster.md")


def example_text() -> str:
    return "\n".join((REPO / name).read_text() for name in EXAMPLE_DOCS)


def readme_blocks() -> list[str]:
    return BASH_BLOCK.findall(example_text())


def materialize_lines() -> list[str]:
    return [
        line.split("#")[0].strip()
        for block in readme_blocks()
        for line in block.splitlines()
        if line.strip().startswith(MATERIALIZE)
    ]


def parse(line: str) -> tuple[str, tuple[str, ...]]:
    """(the --select argument, the -c files in order) of one `dagster asset materialize` line."""
    words = shlex.split(line)
    select = words[words.index("--select") + 1]
    configs = tuple(words[k + 1] for k, word in enumerate(words) if word == "-c")
    assert words[:3] == ["dagster", "asset", "materialize"] and words[3:5] == ["-m", "persona_assets.definitions"], line
    return select, configs


def readme_reanalysis_command() -> list[str]:
    """The one-file re-analysis command of docs/reanalysis.md (run by tests/test_reanalysis.py)."""
    [line] = [
        line for line in materialize_lines() if parse(line) == ("group:legacy", ("configs/reanalyze_legacy.yaml",))
    ]
    return shlex.split(line)


def merged(configs: list[Path]) -> dict:
    """Later files win on a conflict, as with repeated -c (checked against the CLI below)."""

    def merge(base: dict, top: dict) -> dict:
        out = dict(base)
        for key, value in top.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out

    result: dict = {}
    for path in configs:
        result = merge(result, yaml.safe_load(path.read_text()) or {})
    return result


def _validate(configs: list[Path]) -> None:
    from persona_assets.definitions import defs
    from persona_assets.run_config_validation import run_config_problems

    run_config = merged(configs)
    job = defs.resolve_implicit_global_asset_job_def()
    validation = dg.validate_run_config(job, run_config)
    assert validation, configs
    assert run_config_problems(run_config, job) == [], configs


def test_the_readme_has_the_examples_this_file_covers():
    readme = (REPO / "README.md").read_text()
    for doc in EXAMPLE_DOCS[1:]:
        assert f"]({doc})" in readme, f"the README links {doc}, where some examples live"
    assert [parse(line)[1] for line in materialize_lines() if line in readme] == [("configs/full_12x20.yaml",)]
    lines = materialize_lines()
    assert len(lines) == 4, lines
    assert {parse(line) for line in lines} == {
        ("*", ("configs/full_12x20.yaml",)),
        ("*", ("configs/full_12x20.yaml", "configs/cluster/dask_slurm.yaml")),
        ("group:legacy", ("configs/reanalyze_legacy.yaml",)),
        ("group:legacy", ("configs/reanalyze_legacy.yaml", "my_dir.yaml")),
    }
    assert any("make job" in block and "make test" in block for block in BASH_BLOCK.findall(readme))


def test_make_job_is_the_demo_config_over_the_whole_graph():
    """`make job` (minutes): the Makefile's command line and the config it names, validated."""
    makefile = (REPO / "Makefile").read_text()
    assert "CONFIG ?= configs/demo.yaml" in makefile
    job = makefile.split("\njob:", 1)[1].split("\n\n", 1)[0]
    assert "dagster asset materialize -m persona_assets.definitions --select '*' -c $(CONFIG)" in job
    assert "python -m persona_assets.summary" in job
    _validate([REPO / "configs" / "demo.yaml"])


def test_the_slurm_example_names_valid_configs_in_its_order():
    """The SLURM example needs a cluster: its two configs are validated together, the later file winning."""
    [line] = [line for line in materialize_lines() if "configs/cluster/dask_slurm.yaml" in parse(line)[1]]
    _validate([REPO / c for c in parse(line)[1]])


def test_the_gpu_example_names_a_valid_config():
    """The Qwen2.5-7B example needs a GPU: its config is validated, in the README's -c order."""
    [line] = [line for line in materialize_lines() if parse(line)[1] == ("configs/full_12x20.yaml",)]
    _validate([REPO / c for c in parse(line)[1]])


def test_the_reanalysis_example_names_a_valid_config():
    _validate([REPO / c for c in parse(" ".join(readme_reanalysis_command()))[1]])


def test_a_later_config_file_wins_as_the_readme_says(tmp_path):
    """Runs the two-file example of docs/reanalysis.md (its heredoc and command) with /path/to/results replaced
    by a real folder: a copy of the bundled study without its divergences, so that the run stops at
    its first step saying so — which proves the later file's folder was used (the earlier one's,
    data/reference_study, is complete and would have gone through)."""
    [block] = [b for b in readme_blocks() if "my_dir.yaml" in b]
    results = tmp_path / "results"
    shutil.copytree(REFERENCE_STUDY, results)
    (results / "divergence_matrices.json").unlink()
    script = block.replace("/path/to/results", str(results)).replace(
        "dagster asset materialize", f"{shlex.quote(str(Path(sys.executable).parent / 'dagster'))} asset materialize"
    )
    work = tmp_path / "work"
    shutil.copytree(REPO / "configs", work / "configs")
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO)}
    run = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert f"{results}: lacks divergence_matrices.json" in output, output[-3000:]
    assert 'Started execution of step "legacy_cosine_precheck"' not in output

    # The merge this file's validation uses agrees with the CLI: the later file's value.
    assert merged([work / "configs" / "reanalyze_legacy.yaml", work / "my_dir.yaml"])["ops"]["legacy_results"][
        "config"
    ] == {"legacy_dir": str(results)}
    assert merged([work / "my_dir.yaml", work / "configs" / "reanalyze_legacy.yaml"])["ops"]["legacy_results"][
        "config"
    ] == {"legacy_dir": "data/reference_study"}


@pytest.mark.parametrize("config", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_every_scenario_config_is_valid(config):
    _validate([REPO / "configs" / config])


def documentation() -> list[Path]:
    """The README and every page under docs/."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_every_test_the_readme_names_exists():
    """The tables of the README and its docs (the bad-input table is docs/bad-input.md) cite tests as
    `tests/x.py::name` (or `::name` after one): each one exists."""
    cited = 0
    rows = [row for page in documentation() for row in page.read_text().splitlines()]
    for row in rows:
        current = None
        for match in re.finditer(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`", row if row.startswith("|") else ""):
            current = match.group(1) or current
            if current is None:
                continue
            source = (REPO / current).read_text()
            if match.group(2):
                assert f"def {match.group(2)}(" in source, f"{current}::{match.group(2)}"
                cited += 1
    assert cited > 50


def readme_selections() -> list[str]:
    """Every `--select` value the README and the docs with its examples show, in code blocks and in the text,
    in order of appearance."""
    found = re.findall(r"--select\s+('[^']*'|[^\s`]+)", example_text())
    return list(dict.fromkeys(shlex.split(value)[0] for value in found))


def test_every_readme_selection_runs_on_the_ci_config(ci_cli_run, tmp_path):
    """Each selection the README shows runs through the CLI, as a user types it, on configs/ci.yaml with
    the embedded model, one after the other on one data directory: first the whole graph (the suite's
    shared run, tests/shared_runs.py, copied here), then the others on top (`divergence_matrices*` reads
    the first run's generations). A selection naming one of the three divergence tables without the
    others used to end in DagsterInvalidSubsetError."""
    selections = readme_selections()
    assert {"*", "divergence_matrices*", "group:legacy"} <= set(selections), selections
    assert ci_cli_run.returncode == 0 and "DagsterInvalidSubsetError" not in ci_cli_run.output, (
        "*",
        ci_cli_run.output[-4000:],
    )
    copy = tmp_path / "run"
    shutil.copytree(ci_cli_run.root, copy, symlinks=True, ignore=shutil.ignore_patterns(".lock", "finished.json"))
    env = {**ci_cli_run.env(copy), "PYTHONPATH": str(REPO)}
    data = Path(env["PERSONA_DATA_DIR"])
    [first] = result_sets.list_runs(data)
    assert first["status"] == result_sets.COMPLETE and first["published"], ci_cli_run.output[-4000:]
    run_ids = {"*": first["run_id"]}
    for selection in [s for s in selections if s != "*"]:
        command = materialize_command(selection, "configs/ci.yaml")
        run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        output = run.stdout + run.stderr
        assert run.returncode == 0 and "DagsterInvalidSubsetError" not in output, (selection, output[-4000:])
        [new] = [r for r in result_sets.list_runs(data) if r["run_id"] not in run_ids.values()]
        assert new["status"] == result_sets.COMPLETE and new["published"], (selection, output[-4000:])
        run_ids[selection] = new["run_id"]
    sources = json.loads(((data / "outputs").resolve().parent / "view.json").read_text())["sources"]
    # `divergence_matrices*` wrote divergence_matrices and everything below it; its sibling tables,
    # not selected, are the first run's (the same eval set, generations and settings).
    assert sources["divergence_matrices.json"] == run_ids["divergence_matrices*"]
    assert sources["kill_gate_verdicts.json"] == run_ids["divergence_matrices*"]
    assert sources["divergence_per_response.csv"] == run_ids["*"]
    assert sources["generations.json"] == run_ids["*"]
