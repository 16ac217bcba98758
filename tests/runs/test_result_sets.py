"""Versioned result sets on plain folders: publishing, failed runs, partial runs, listing, pruning."""

from __future__ import annotations

import json
from pathlib import Path

from persona_assets.runs import result_sets as rs


def _write_run(data: Path, run_id: str, files: dict[str, str], figures: dict[str, str] | None = None) -> None:
    rs.start_run(data, run_id, {"ops": {"eval_set": {"config": {"n_questions": len(files)}}}})
    for name, text in files.items():
        path = rs.run_dir(data, run_id) / "outputs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for name, text in (figures or {}).items():
        path = rs.run_dir(data, run_id) / "figures" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _view(data: Path) -> dict[str, str]:
    outputs = data / "outputs"
    return {str(p.relative_to(outputs)): p.read_text() for p in sorted(outputs.rglob("*")) if p.is_file()}


def test_a_complete_run_is_published_and_a_failed_one_is_not(tmp_path):
    data, figures = tmp_path / "data", tmp_path / "figures"
    _write_run(data, "good", {"a.json": "1", "b.csv": "x\n"}, {"f.png": "png-1"})
    assert rs.finish_run(data, "good", complete=True, failed_steps=[], figures_dir=figures) == rs.COMPLETE
    assert _view(data) == {"a.json": "1", "b.csv": "x\n"} and (figures / "f.png").read_text() == "png-1"
    assert (data / "outputs").is_symlink()

    _write_run(data, "bad", {"a.json": "2"}, {"f.png": "png-2"})
    assert rs.finish_run(data, "bad", complete=False, failed_steps=["persona_cosine"], figures_dir=figures) == rs.FAILED
    assert _view(data) == {"a.json": "1", "b.csv": "x\n"} and (figures / "f.png").read_text() == "png-1"
    manifest = json.loads((data / "runs" / "bad" / "run.json").read_text())
    assert manifest["status"] == "failed" and manifest["failed_steps"] == ["persona_cosine"]
    assert (data / "runs" / "bad" / "outputs" / "a.json").read_text() == "2"  # its own files stay, labelled


def test_a_run_still_going_is_not_decided_and_a_decided_run_is_not_redone(tmp_path):
    data = tmp_path / "data"
    _write_run(data, "r", {"a.json": "1"})
    assert rs.finish_run(data, "r", complete=False, failed_steps=[], figures_dir=tmp_path / "f") is None
    assert not (data / "outputs").exists()
    assert rs.finish_run(data, "r", complete=True, failed_steps=[], figures_dir=tmp_path / "f") == rs.COMPLETE
    assert rs.finish_run(data, "r", complete=False, failed_steps=["x"], figures_dir=tmp_path / "f") == rs.COMPLETE


def test_a_partial_run_is_published_on_top_of_the_previous_set_with_sources(tmp_path):
    data = tmp_path / "data"
    _write_run(data, "first", {"a.json": "1", "b.json": "1"})
    rs.finish_run(data, "first", complete=True, failed_steps=[], figures_dir=tmp_path / "f")
    _write_run(data, "second", {"b.json": "2"})
    rs.finish_run(data, "second", complete=True, failed_steps=[], figures_dir=tmp_path / "f")
    assert _view(data) == {"a.json": "1", "b.json": "2"}
    sources = json.loads((data / "views" / "second" / "view.json").read_text())["sources"]
    assert sources == {"a.json": "first", "b.json": "second"}
    # The first run's own files are untouched by the second's publication (links, not shared writes).
    assert (data / "runs" / "first" / "outputs" / "b.json").read_text() == "1"


def test_outputs_written_before_versioning_become_the_base_set(tmp_path):
    data = tmp_path / "data"
    (data / "outputs").mkdir(parents=True)
    (data / "outputs" / "old.json").write_text("old")
    _write_run(data, "new", {"a.json": "1"})
    rs.finish_run(data, "new", complete=True, failed_steps=[], figures_dir=tmp_path / "f")
    assert _view(data) == {"a.json": "1", "old.json": "old"}
    assert json.loads((data / "views" / "new" / "view.json").read_text())["sources"]["old.json"] == rs.BEFORE_VERSIONING


def test_list_and_prune_never_remove_the_published_set(tmp_path):
    data = tmp_path / "data"
    for k, run_id in enumerate(["r1", "r2", "r3"]):
        _write_run(data, run_id, {"a.json": str(k)})
        rs.finish_run(
            data,
            run_id,
            complete=run_id == "r1",
            failed_steps=[] if run_id == "r1" else ["x"],
            figures_dir=tmp_path / "f",
        )
    runs = rs.list_runs(data)
    assert [(r["run_id"], r["status"], r["published"]) for r in runs] == [
        ("r1", "complete", True),
        ("r2", "failed", False),
        ("r3", "failed", False),
    ]
    assert "r1" in rs.describe(runs)
    assert rs.prune(data, keep=1) == ["r2", "r3"]
    assert [r["run_id"] for r in rs.list_runs(data)] == ["r1"] and _view(data) == {"a.json": "0"}
