"""Which files of a published set still belong together (persona_assets.runs.view_lineage)."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from persona_assets.runs import result_sets as rs
from persona_assets.runs.view_lineage import Entry, consistent_set, record_figures, record_output, record_side_file


def _entry(asset: str, run: str, digest: str, **inputs: str | None) -> Entry:
    return Entry(asset, run, (f"{asset}.json",), digest, dict(inputs))


def test_a_changed_input_withdraws_everything_computed_from_it_and_nothing_else():
    previous = {
        "a": _entry("a", "r1", "A1"),
        "b": _entry("b", "r1", "B1", a="A1"),
        "c": _entry("c", "r1", "C1", b="B1"),
        "d": _entry("d", "r1", "D1"),
        "e": _entry("e", "r1", "E1", d="D1"),
    }
    kept, withdrawn = consistent_set(previous, {"a": _entry("a", "r2", "A2")})
    assert set(kept) == {"a", "d", "e"} and kept["a"].run_id == "r2"
    assert set(withdrawn) == {"b", "c"}
    assert withdrawn["b"]["reason"] == "computed from a (sha256 A1); the set now holds a.json of run r2 (A2)"
    assert withdrawn["c"]["reason"] == "computed from b (sha256 B1); the set now holds none"


def test_the_same_bytes_again_withdraw_nothing():
    previous = {"a": _entry("a", "r1", "A1"), "b": _entry("b", "r1", "B1", a="A1")}
    kept, withdrawn = consistent_set(previous, {"a": _entry("a", "r2", "A1")})
    assert withdrawn == {} and kept["b"].run_id == "r1" and kept["a"].run_id == "r2"


def _run(
    data: Path,
    run_id: str,
    files: dict[str, str],
    records: dict[str, tuple[str, dict]],
    side: dict[str, list[str]] | None = None,
    figures: dict[str, str] | None = None,
) -> None:
    rs.start_run(data, run_id, {})
    for owner, text in (figures or {}).items():  # each owner draws one figure in its own folder
        (rs.run_dir(data, run_id) / "figures" / owner).mkdir(parents=True)
        (rs.run_dir(data, run_id) / "figures" / owner / "plot.png").write_text(text)
        record_figures(rs.run_dir(data, run_id), owner, owner)
    for name, text in files.items():
        (rs.run_dir(data, run_id) / "outputs").mkdir(parents=True, exist_ok=True)
        (rs.run_dir(data, run_id) / "outputs" / name).write_text(text)
    for asset, (step, inputs) in records.items():
        record_output(rs.run_dir(data, run_id), asset, step, f"{asset}.json", inputs)
    for owner, names in (side or {}).items():
        for name in names:
            record_side_file(rs.run_dir(data, run_id), owner, name)
    assert rs.finish_run(data, run_id, complete=True, failed_steps=[], figures_dir=data / "figures") == rs.COMPLETE


def _shown(data: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in (data / "outputs").iterdir()}


def test_side_files_go_with_their_asset_and_siblings_of_one_step_with_each_other(tmp_path):
    from persona_assets.runs.view_lineage import file_digest

    data = tmp_path / "data"
    _run(
        data,
        "r1",
        {"x.json": "x1", "pairs.csv": "p1", "directed.csv": "d1", "m.json": "m1", "t.json": "t1"},
        {"x": ("sx", {}), "m": ("agg", {}), "t": ("agg", {})},
        {"x": ["pairs.csv", "directed.csv"]},
        figures={"t": "t-png", "x": "x-png"},
    )
    assert set(_shown(data)) == {"x.json", "pairs.csv", "directed.csv", "m.json", "t.json"}
    assert (data / "figures" / "t" / "plot.png").read_text() == "t-png"

    # x again, without the directed table this time: its old directed.csv is not left beside it.
    _run(data, "r2", {"x.json": "x1", "pairs.csv": "p1"}, {"x": ("sx", {})}, {"x": ["pairs.csv"]})
    assert set(_shown(data)) == {"x.json", "pairs.csv", "m.json", "t.json"}

    # m alone with other bytes: t, computed with the old m in the same step, is withdrawn.
    _run(data, "r3", {"m.json": "m2"}, {"m": ("agg", {})})
    view = json.loads((data / "views" / "r3" / "view.json").read_text())
    assert set(_shown(data)) == {"x.json", "pairs.csv", "m.json"}
    m1 = file_digest(rs.run_dir(data, "r1") / "outputs" / "m.json")[:12]
    reason = view["withdrawn"]["t"]["reason"]
    assert reason.startswith(f"computed next to m (sha256 {m1}); the set now holds m.json of run r3"), reason
    assert view["withdrawn"]["t"]["withdrawn_by_run"] == "r3"
    assert rs.withdrawn_from_view(data, "r3") == view["withdrawn"] and rs.withdrawn_from_view(data, "r2") == {}
    assert (data / "runs" / "r1" / "outputs" / "t.json").read_text() == "t1"  # withdrawn, not deleted
    # The figures t drew leave the figures directory with it (the run keeps them); x's stay.
    assert not (data / "figures" / "t" / "plot.png").exists()
    assert (data / "runs" / "r1" / "figures" / "t" / "plot.png").read_text() == "t-png"
    assert (data / "figures" / "x" / "plot.png").read_text() == "x-png"


def test_a_run_writing_one_of_its_ops_outputs_into_an_empty_set_keeps_it(tmp_path):
    """The op computed t next to m but wrote only m (t not selected): nothing in the set contradicts m."""
    from persona_assets.runs.view_lineage import computed_file, record_computed

    data = tmp_path / "data"
    computed_file(rs.run_dir(data, "r1"), "t", ".json").parent.mkdir(parents=True)
    computed_file(rs.run_dir(data, "r1"), "t", ".json").write_text("t1")
    record_computed(rs.run_dir(data, "r1"), "t", "agg", "t.json")
    _run(data, "r1", {"m.json": "m1"}, {"m": ("agg", {})})
    assert _shown(data) == {"m.json": "m1"} and rs.withdrawn_from_view(data) == {}


def test_a_side_file_of_a_set_without_lineage_is_replaced_by_the_runs_own(tmp_path):
    """outputs/ written before lineage: its pairs.csv is an entry of its own ("pairs"); a run whose asset x
    writes pairs.csv as its side file replaces it (one file, the run's), instead of two entries claiming it."""
    data = tmp_path / "data"
    (data / "outputs").mkdir(parents=True)
    (data / "outputs" / "pairs.csv").write_text("old")
    (data / "outputs" / "other.json").write_text("o")
    _run(data, "r1", {"x.json": "x1", "pairs.csv": "new"}, {"x": ("sx", {})}, {"x": ["pairs.csv"]})
    assert _shown(data) == {"x.json": "x1", "pairs.csv": "new", "other.json": "o"}
    view = json.loads((data / "views" / "r1" / "view.json").read_text())
    assert view["sources"] == {"x.json": "r1", "pairs.csv": "r1", "other.json": rs.BEFORE_VERSIONING}
    assert set(view["entries"]) == {"x", "other"}


def test_a_table_written_alone_replaces_the_siblings_it_was_not_computed_next_to(tmp_path):
    from persona_assets.runs.view_lineage import computed_file, record_computed

    data = tmp_path / "data"
    _run(data, "r1", {"m.json": "m1", "t.json": "t1"}, {"m": ("agg", {}), "t": ("agg", {})})

    def alone(run_id: str, t: str, m: str) -> None:  # writes t only; m computed next to it, not written
        computed_file(rs.run_dir(data, run_id), "m", ".json").parent.mkdir(parents=True, exist_ok=True)
        computed_file(rs.run_dir(data, run_id), "m", ".json").write_text(m)
        record_computed(rs.run_dir(data, run_id), "m", "agg", "m.json")
        _run(data, run_id, {"t.json": t}, {"t": ("agg", {})})

    alone("r2", "t1", "m1")  # the same settings: nothing changes but t's run
    assert _shown(data) == {"m.json": "m1", "t.json": "t1"} and rs.withdrawn_from_view(data) == {}
    alone("r3", "t3", "m3")  # other settings: the new t stays, the m it was not computed next to goes
    assert _shown(data) == {"t.json": "t3"}
    reason = rs.withdrawn_from_view(data, "r3")["m"]["reason"]
    assert reason.startswith("computed next to t (sha256 ") and "the set now holds t.json of run r3" in reason, reason


@st.composite
def histories(draw):
    """A random DAG of assets (edges to earlier ones), a consistent first set, and a second run that
    re-materializes a random subset, some with new bytes, reading the rest from the first set."""
    n = draw(st.integers(2, 8))
    parents = {k: sorted(draw(st.sets(st.integers(0, k - 1), max_size=3)) if k else []) for k in range(n)}
    first = {}
    for k in range(n):
        first[f"a{k}"] = _entry(f"a{k}", "r1", f"v1-{k}", **{f"a{p}": first[f"a{p}"].digest for p in parents[k]})
    rerun = sorted(draw(st.sets(st.integers(0, n - 1), min_size=1)))
    changed = {k for k in rerun if draw(st.booleans())}
    produced = {}
    for k in rerun:  # in order: each reads its parents from this run if re-run, else from the first set
        read = {f"a{p}": (produced[f"a{p}"] if p in rerun else first[f"a{p}"]).digest for p in parents[k]}
        produced[f"a{k}"] = _entry(f"a{k}", "r2", f"v2-{k}" if k in changed else f"v1-{k}", **read)
    return parents, first, produced


@settings(max_examples=300, deadline=None)
@given(histories())
def test_the_published_set_is_consistent_and_drops_exactly_what_was_computed_from_other_bytes(history):
    parents, first, produced = history
    kept, withdrawn = consistent_set(first, produced)
    for entry in kept.values():  # every file shown was computed from the files shown
        assert all(kept.get(up) is not None and kept[up].digest == d for up, d in entry.inputs.items())

    def moved(p: int) -> bool:
        return f"a{p}" in produced and produced[f"a{p}"].digest != first[f"a{p}"].digest

    def valid(k: int) -> bool:
        """Independently, on the DAG: every parent is shown, and (unless k was re-run, reading the
        parent as shown) with the bytes k was computed from."""
        rerun = f"a{k}" in produced
        return all(valid(p) and (rerun or not moved(p)) for p in parents[k])

    assert set(kept) == {f"a{k}" for k in parents if valid(k)}, parents
    assert set(withdrawn) == {f"a{k}" for k in parents if not valid(k)}

    # A run that re-runs an asset and every ancestor of it never loses that asset.
    def ancestors(k: int) -> set[int]:
        return {a for p in parents[k] for a in {p, *ancestors(p)}}

    for k in parents:
        if f"a{k}" in produced and all(f"a{a}" in produced for a in ancestors(k)):
            assert kept[f"a{k}"].run_id == "r2"
