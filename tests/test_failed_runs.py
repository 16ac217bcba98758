"""Bad leakage and cosine-vs-leakage inputs through the graph: the first step fails with the file
and field named, before any model step, and a failed run leaves the results of the last good run
exactly as they were."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from persona_assets.assets.leakage import leakage_rates
from persona_assets.config import LeakageConfig
from tests.test_graph import PERSONAS, materialize, run_config, write_leakage


def _step_failures(result) -> dict[str, str]:
    return {e.step_key: e.step_failure_data.error.message for e in result.get_step_failure_events()}


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _leakage_run(tmp_path: Path, leakage: str) -> dg.RunConfig:
    return run_config(tmp_path, leakage_rates={"config": {"leakage_path": leakage}})


def test_leakage_of_other_personas_fails_the_first_step_naming_both_sets(tiny_model_dir, tmp_path):
    leakage = write_leakage(tmp_path / "other.csv", [("pirate", "librarian", 0.2), ("librarian", "pirate", 0.1)])
    result = materialize(tiny_model_dir, _leakage_run(tmp_path, leakage))
    assert not result.success
    failures = _step_failures(result)
    # The file is checked with the run's settings in eval_set, before any model step starts.
    assert set(failures) == {"eval_set"}
    message = failures["eval_set"]
    assert "ops.leakage_rates.config" in message
    assert leakage in message and "do not overlap" in message
    assert "personas in the file: librarian, pirate" in message
    assert f"personas of the run: {', '.join(PERSONAS)}" in message
    assert not result.get_asset_materialization_events()
    assert not (tmp_path / "figures").exists() and not (tmp_path / "data" / "outputs" / "generations.json").exists()


def test_leakage_rates_alone_fails_naming_both_sets(tmp_path):
    leakage = write_leakage(tmp_path / "other.csv", [("pirate", "librarian", 0.2)])
    eval_set = {
        "personas": [{"name": n, "prompt": f"You are a {n}."} for n in PERSONAS],
        "questions": ["Hi?"],
        "sources": {},
    }
    with dg.build_asset_context() as context, pytest.raises(dg.Failure, match="do not overlap") as raised:
        leakage_rates(context, LeakageConfig(leakage_path=leakage), eval_set)
    assert leakage in str(raised.value)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "no such file"),
        ("{not json", "not valid JSON"),
        ('{"layer20": {"aggregate": {}}}', "lacks _per_source_detail"),
    ],
)
def test_unusable_cosine_leakage_file_fails_the_first_step(tiny_model_dir, tmp_path, content, fragment):
    path = tmp_path / "cosine_leakage_correlation.json"
    if content is not None:
        path.write_text(content)
    config = run_config(tmp_path, cosine_precheck={"config": {"cosine_leakage_file": str(path)}})
    result = materialize(tiny_model_dir, config)
    assert not result.success
    failures = _step_failures(result)
    assert set(failures) == {"eval_set"}
    assert "ops.cosine_precheck.config" in failures["eval_set"] and str(path) in failures["eval_set"]
    assert fragment in failures["eval_set"]
    assert not result.get_asset_materialization_events()


def test_partial_overlap_proceeds_and_reports_the_dropped_pairs(tmp_path):
    leakage = write_leakage(
        tmp_path / "leak.csv", [("villain", "comedian", 0.2), ("villain", "pirate", 0.4), ("parrot", "assistant", 0.1)]
    )
    eval_set = {
        "personas": [{"name": n, "prompt": f"You are a {n}."} for n in PERSONAS],
        "questions": ["Hi?"],
        "sources": {},
    }
    with dg.build_asset_context() as context:
        value = leakage_rates(context, LeakageConfig(leakage_path=leakage), eval_set)
    assert value["rows"] == [{"source": "villain", "target": "comedian", "rate": 0.2}]
    assert value["dropped"] == {
        "unknown_personas": ["parrot", "pirate"],
        "n_dropped_pairs": 2,
        "dropped_pairs": ["villain -> pirate", "parrot -> assistant"],
        "personas_without_rates": ["software_engineer", "assistant"],
    }


def test_a_failed_run_leaves_the_earlier_results_untouched(tiny_model_dir, tmp_path):
    rows = [
        (s, t, round(0.1 + 0.05 * i + 0.01 * j, 3))
        for i, s in enumerate(PERSONAS)
        for j, t in enumerate(PERSONAS)
        if s != t
    ]
    # A partial overlap: the pirate's rows are dropped, the run proceeds and says so.
    good_rows = [*rows, ("pirate", "villain", 0.5), ("villain", "pirate", 0.6)]
    good = materialize(tiny_model_dir, _leakage_run(tmp_path, write_leakage(tmp_path / "good.csv", good_rows)))
    assert good.success
    assert good.output_for_node("leakage_rates")["dropped"]["dropped_pairs"] == [
        "pirate -> villain",
        "villain -> pirate",
    ]
    leakage = good.output_for_node("leakage_correlations")["leakage"]
    assert leakage["n_directed_pairs"] == len(rows)
    assert "2 pair(s) of the file dropped, personas not in this run: pirate" in leakage["source_of_rates"]
    data, figures = tmp_path / "data" / "outputs", tmp_path / "figures"
    before = {"outputs": _snapshot(data), "figures": _snapshot(figures)}
    assert "figures.json" in before["outputs"] and "js_vs_leakage.png" in before["figures"]

    bad_rows = [*rows[:-1], (rows[-1][0], rows[-1][1], 1.7)]  # a rate outside [0, 1]
    bad = materialize(tiny_model_dir, _leakage_run(tmp_path, write_leakage(tmp_path / "bad.csv", bad_rows)))
    assert not bad.success
    assert "outside [0, 1]" in _step_failures(bad)["eval_set"]
    # The run stopped at its first step: nothing was rewritten or removed, every output and
    # figure keeps the last good values.
    assert {"outputs": _snapshot(data), "figures": _snapshot(figures)} == before
