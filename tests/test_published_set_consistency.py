"""`outputs/` is one experiment: a run that changes an input withdraws the earlier files computed
from the old one (and what was computed from those) from the published set, through the graph."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from persona_assets.checks import all_checks
from persona_assets.definitions import all_assets
from persona_assets.environment import storage_resources
from resources.llm import CpuLLM
from tests.test_graph import PERSONAS, materialize, run_config

DIVERGENCE_FILES = {"divergence_matrices.json", "divergence_per_response.csv", "divergence_per_pair_question.csv"}


def _select(tiny_model_dir, config, selection: str, instance=None):
    """Materialize `selection` with the settings of its own ops (Dagster refuses config of unselected ones)."""
    ops = {"divergence_per_pair_question": "divergence_matrices"}.get(selection, selection)
    return dg.materialize(
        [*all_assets, *all_checks],
        selection=selection,
        resources={"llm": CpuLLM(model=str(tiny_model_dir)), **storage_resources()},
        run_config=dg.RunConfig(ops={k: v for k, v in config.ops.items() if k == ops}),
        raise_on_error=False,
        instance=instance,
    )


def _published(data: Path) -> dict:
    return json.loads(((data / "outputs").resolve().parent / "view.json").read_text())


def _files(data: Path) -> set[str]:
    return {p.name for p in (data / "outputs").iterdir() if p.is_file() and not p.name.startswith(".")}


def test_a_run_with_other_personas_withdraws_the_old_experiments_files(tiny_model_dir, tmp_path):
    data = tmp_path / "data"
    instance = dg.DagsterInstance.ephemeral()
    full = materialize(tiny_model_dir, run_config(tmp_path), instance)
    assert full.success
    complete = _files(data)
    assert {
        "eval_set.json",
        "generations.json",
        "generations.csv",
        "kill_gate_verdicts.json",
        "figures.json",
    } | DIVERGENCE_FILES <= complete

    # The same eval set again: the same bytes, so nothing is withdrawn.
    same = _select(tiny_model_dir, run_config(tmp_path), "eval_set", instance)
    assert same.success
    assert _files(data) == complete and _published(data)["withdrawn"] == {}
    assert (tmp_path / "figures" / "js_heatmap.png").stat().st_size > 1000
    assert _published(data)["sources"]["divergence_matrices.json"] == full.run_id

    # The scenario: --select eval_set with 2 of the 4 personas.
    two = run_config(tmp_path, eval_set={"config": {"personas": PERSONAS[:2], "n_questions": 2}})
    partial = _select(tiny_model_dir, two, "eval_set", instance)
    assert partial.success
    view = _published(data)
    shown = [p["name"] for p in json.loads((data / "outputs" / "eval_set.json").read_text())["personas"]]
    assert shown == PERSONAS[:2]
    # Nothing of the 4-persona experiment is left beside it: everything else was computed from its eval set.
    assert _files(data) == {"eval_set.json"}, _files(data)
    assert view["sources"] == {"eval_set.json": partial.run_id}
    withdrawn = view["withdrawn"]
    assert {"generations", "divergence_matrices", "divergence_per_response", "kill_gate_verdicts", "figures"} <= set(
        withdrawn
    )
    assert withdrawn["generations"]["reason"].startswith("computed from eval_set (sha256 ")
    assert f"holds eval_set.json of run {partial.run_id}" in withdrawn["generations"]["reason"]
    assert (
        "computed from generations" in withdrawn["persona_cosine"]["reason"]
        or "eval_set" in withdrawn["persona_cosine"]["reason"]
    )
    assert set(withdrawn["generations"]["files"]) == {"generations.json", "generations.csv"}
    assert all(w["run_id"] == full.run_id and w["withdrawn_by_run"] == partial.run_id for w in withdrawn.values())
    # Withdrawn from the view, not deleted: the full run's own files are all still there.
    assert {p.name for p in (data / "runs" / full.run_id / "outputs").iterdir()} >= complete
    # The 4-persona figures leave the figures directory too (the full run keeps its own copies).
    assert not (tmp_path / "figures" / "js_heatmap.png").exists()
    assert (data / "runs" / full.run_id / "figures" / "js_heatmap.png").stat().st_size > 1000
    # The run said so in its log, file by file.
    warnings = [r.user_message for r in instance.all_logs(partial.run_id) if r.level >= 30]
    assert any(
        m.startswith("generations.json, generations.csv (run ") and "materialize generations again" in m
        for m in warnings
    ), warnings

    # A later step that needs a withdrawn input fails naming why, instead of reading the other experiment.
    verdicts_only = _select(tiny_model_dir, two, "kill_gate_verdicts", instance)
    assert not verdicts_only.success
    [failure] = [e for e in verdicts_only.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    message = failure.event_specific_data.error.to_string()
    assert "materialize" in message and f"withdrawn from the published set by run {partial.run_id}" in message
    assert _files(data) == {"eval_set.json"}


def test_re_materializing_one_divergence_table_with_other_settings_withdraws_its_siblings_and_what_follows(
    tiny_model_dir, tmp_path
):
    data = tmp_path / "data"
    full = materialize(tiny_model_dir, run_config(tmp_path))
    assert full.success

    # One table alone, same settings: it runs (a subset of the graph asset) and changes nothing else.
    one = _select(tiny_model_dir, run_config(tmp_path), "divergence_per_pair_question")
    assert one.success
    view = _published(data)
    assert view["withdrawn"] == {} and view["sources"]["divergence_per_pair_question.csv"] == one.run_id
    assert view["sources"]["divergence_matrices.json"] == full.run_id
    assert not (data / "runs" / one.run_id / "outputs" / "divergence_matrices.json").exists()

    # divergence_matrices alone with another averaging: its two sibling tables (computed with the old
    # averaging) and everything downstream of it leave the set; eval_set and generations stay.
    other = run_config(tmp_path, divergence_matrices={"config": {"averaging": "all_responses"}})
    matrices = _select(tiny_model_dir, other, "divergence_matrices")
    assert matrices.success
    view = _published(data)
    assert view["sources"]["divergence_matrices.json"] == matrices.run_id
    assert (
        json.loads((data / "outputs" / "divergence_matrices.json").read_text())["method"]["averaging"]
        == "all_responses"
    )
    assert {
        "divergence_per_response",
        "divergence_per_pair_question",
        "leakage_correlations",
        "kill_gate_verdicts",
    } <= set(view["withdrawn"])
    reason = view["withdrawn"]["divergence_per_pair_question"]["reason"]
    assert reason.startswith(
        f"run {matrices.run_id} computed divergence_matrices next to divergence_per_pair_question"
    ), reason
    # The tables it computed but did not write are kept with the run, as they would have been published.
    assert (data / "runs" / matrices.run_id / "lineage" / "computed" / "divergence_per_pair_question.csv").is_file()
    assert {"eval_set.json", "generations.json", "persona_cosine.json"} <= _files(data)
    assert not (DIVERGENCE_FILES - {"divergence_matrices.json"}) & _files(data)
