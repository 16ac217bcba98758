"""Every run's files are kept by run id; outputs/ and figures/ show the latest complete run, and a
run that fails late (after it has written files of its own) changes neither."""

from __future__ import annotations

import json
from pathlib import Path

from persona_assets.runs import result_sets
from tests.run_results import materializations
from tests.test_graph import PERSONAS, materialize, run_config


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_run_failing_late_changes_neither_the_published_set_nor_the_figures(tiny_model_dir, nan_model_dir, tmp_path):
    good = materialize(tiny_model_dir, run_config(tmp_path))
    assert good.success
    data, figures = tmp_path / "data", tmp_path / "figures"
    before = {"outputs": _snapshot(data / "outputs"), "figures": _snapshot(figures)}
    assert {"eval_set.json", "generations.json", "generations.csv", "figures.json"} <= set(before["outputs"])

    # Other personas, and a model whose later steps fail: eval_set and generations write files first.
    other = run_config(tmp_path, eval_set={"config": {"personas": PERSONAS[:3], "n_questions": 2}})
    bad = materialize(nan_model_dir, other)
    assert not bad.success
    assert {"outputs": _snapshot(data / "outputs"), "figures": _snapshot(figures)} == before
    assert [p["name"] for p in json.loads((data / "outputs" / "eval_set.json").read_text())["personas"]] == PERSONAS

    # The failed run's own files stay beside, labelled failed, with its config.
    manifest = json.loads((data / "runs" / bad.run_id / "run.json").read_text())
    assert manifest["status"] == "failed" and manifest["failed_steps"]
    assert manifest["run_config"]["ops"]["eval_set"]["config"]["personas"] == PERSONAS[:3]
    own = json.loads((data / "runs" / bad.run_id / "outputs" / "eval_set.json").read_text())
    assert [p["name"] for p in own["personas"]] == PERSONAS[:3]
    assert (data / "runs" / bad.run_id / "outputs" / "generations.csv").is_file()
    statuses = {r["run_id"]: (r["status"], r["published"]) for r in result_sets.list_runs(data)}
    assert statuses == {good.run_id: ("complete", True), bad.run_id: ("failed", False)}


def test_each_complete_run_is_kept_and_its_metadata_points_at_its_own_files(tiny_model_dir, tmp_path):
    first = materialize(tiny_model_dir, run_config(tmp_path))
    second = materialize(tiny_model_dir, run_config(tmp_path, kill_gate_verdicts={"config": {"min_js_ratio": 1.5}}))
    assert first.success and second.success
    data = tmp_path / "data"
    for run in (first, second):
        [materialization] = materializations(run, "kill_gate_verdicts")
        path = Path(materialization.metadata["path"].value)
        assert path == data / "runs" / run.run_id / "outputs" / "kill_gate_verdicts.json"
        assert json.loads(path.read_text())["discrimination"]["thresholds"]["min_ratio"] == (
            3.0 if run is first else 1.5
        )
    published = json.loads((data / "outputs" / "kill_gate_verdicts.json").read_text())
    assert published["discrimination"]["thresholds"]["min_ratio"] == 1.5
    assert (data / "outputs").resolve() == data / "views" / second.run_id / "outputs"
