"""Tests for persona_assets.inputs.leakage: table and marker-eval loaders, validation errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from persona_assets.runs.errors import InputError
from persona_assets.inputs.leakage import load_leakage, load_leakage_table, load_marker_eval_dir, restrict_to_personas

REFERENCE = Path(__file__).resolve().parents[2] / "data" / "reference_study"
MARKER_EVAL = REFERENCE / "marker_eval"
SOURCES = ["villain", "comedian", "assistant", "software_engineer", "kindergarten_teacher"]

EXPECTED = pd.DataFrame(
    {
        "source": ["villain", "villain", "comedian"],
        "target": ["comedian", "librarian", "villain"],
        "rate": [0.25, 0.0, 1.0],
    }
)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _json(path: Path, data) -> Path:
    return _write(path, json.dumps(data))


# --- valid tables ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("t.csv", "source,target,rate\nvillain,comedian,0.25\nvillain,librarian,0\ncomedian,villain,1\n"),
        (
            "t.json",
            json.dumps(
                [
                    {"source": "villain", "target": "comedian", "rate": 0.25},
                    {"source": "villain", "target": "librarian", "rate": 0},
                    {"source": "comedian", "target": "villain", "rate": 1.0},
                ]
            ),
        ),
        (
            "nested.json",
            json.dumps({"villain": {"comedian": 0.25, "librarian": 0}, "comedian": {"villain": 1}}),
        ),
    ],
)
def test_table_formats_give_the_same_frame(tmp_path: Path, name: str, content: str) -> None:
    path = _write(tmp_path / name, content)
    for loader in (load_leakage_table, load_leakage):
        frame = loader(path)
        pd.testing.assert_frame_equal(frame, EXPECTED)
        assert frame["rate"].dtype == float


def test_csv_keeps_category_and_drops_other_columns(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "t.csv",
        "source, target ,rate,category,comment\nvillain,comedian,0.5,original,x\nNA,1,0.1,other,y\n",
    )
    frame = load_leakage_table(path)
    assert list(frame.columns) == ["source", "target", "rate", "category"]
    # Persona names that pandas would read as NaN or numbers stay strings.
    assert frame["source"].tolist() == ["villain", "NA"]
    assert frame["target"].tolist() == ["comedian", "1"]


# --- malformed tables ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("bad.json", "{not json", "not valid JSON"),
        ("bad.csv", 'source,target,rate\n"villain,comedian,0.2\n', "CSV"),
        ("empty.csv", "", "CSV"),
        ("cols.csv", "src,target,rate\nvillain,comedian,0.2\n", "missing column(s) source"),
        ("nan.csv", "source,target,rate\nvillain,comedian,\n", "rate must be a number"),
        ("nan2.csv", "source,target,rate\nvillain,comedian,nan\n", "rate must be a number"),
        ("text.csv", "source,target,rate\nvillain,comedian,high\n", "rate must be a number"),
        ("high.csv", "source,target,rate\nvillain,comedian,1.2\n", "outside [0, 1]"),
        ("neg.json", '[{"source": "villain", "target": "comedian", "rate": -0.1}]', "outside [0, 1]"),
        ("nan.json", '[{"source": "villain", "target": "comedian", "rate": NaN}]', "rate must be a number"),
        ("bool.json", '{"villain": {"comedian": true}}', "rate must be a number"),
        ("missing.json", '[{"source": "villain", "rate": 0.1}]', "lacks target"),
        ("item.json", '[["villain", "comedian", 0.1]]', "item 0 is not an object"),
        ("scalar.json", "3", "expected a JSON list"),
        ("flat.json", '{"villain": 0.3}', "must be an object {target: rate}"),
        (
            "dup.csv",
            "source,target,rate\nvillain,comedian,0.2\nvillain,comedian,0.3\n",
            "duplicate (source, target) pairs: villain -> comedian",
        ),
        (
            "dupkey.json",
            '{"villain": {"comedian": 0.2, "comedian": 0.3}}',
            "'comedian' appears twice",
        ),
        ("self.csv", "source,target,rate\nvillain,villain,0.9\n", "source == target"),
        ("blank.csv", "source,target,rate\n,comedian,0.1\n", "non-empty persona name"),
        ("none.json", "[]", "no leakage rows"),
        ("header.csv", "source,target,rate\n", "no leakage rows"),
        ("t.txt", "source,target,rate\n", "unsupported file type"),
        (
            "villain.json",
            '{"comedian": {"rate": 0.1, "found": 20, "total": 200}}',
            "single marker-eval file",
        ),
    ],
)
def test_malformed_tables_raise_input_error_naming_the_file(
    tmp_path: Path, name: str, content: str, fragment: str
) -> None:
    path = _write(tmp_path / name, content)
    with pytest.raises(InputError) as info:
        load_leakage(path)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or folder"):
        load_leakage(tmp_path / "absent.csv")
    with pytest.raises(InputError, match="no such file"):
        load_leakage_table(tmp_path / "absent.csv")
    with pytest.raises(InputError, match="not a folder"):
        load_marker_eval_dir(tmp_path / "absent")


# --- marker-eval folders ---------------------------------------------------------------------


def _entry(rate: float, category: str = "original", total: int = 200) -> dict:
    return {"rate": rate, "found": round(rate * total), "total": total, "category": category, "related_to": []}


def _marker_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "marker_eval"
    folder.mkdir()
    _json(
        folder / "villain.json",
        {
            "villain": _entry(0.9),
            "comedian": _entry(0.1),
            "evil_scientist": _entry(0.5, "peer"),
        },
    )
    _json(folder / "comedian.json", {"comedian": _entry(0.8), "villain": _entry(0.05)})
    _json(folder / "villain_summary.json", {"source": "villain", "mean_bystander": 0.3})
    return folder


def test_marker_eval_dir_small(tmp_path: Path) -> None:
    folder = _marker_dir(tmp_path)
    frame = load_leakage(folder)
    assert list(frame.columns) == ["source", "target", "rate", "category"]
    assert sorted(zip(frame["source"], frame["target"], frame["rate"])) == [
        ("comedian", "villain", 0.05),
        ("villain", "comedian", 0.1),
        ("villain", "evil_scientist", 0.5),
    ]
    assert set(frame["category"]) == {"original", "peer"}


def test_marker_eval_dir_without_category(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    _json(folder / "a.json", {"a": {"rate": 1.0}, "b": {"rate": 0.5}})
    frame = load_marker_eval_dir(folder)
    assert list(frame.columns) == ["source", "target", "rate"]


@pytest.mark.parametrize(
    ("file", "content", "fragment"),
    [
        ("villain.json", "{oops", "not valid JSON"),
        ("villain.json", json.dumps({"comedian": 0.1}), "lacks a rate"),
        ("villain.json", json.dumps({"comedian": {"rate": None}}), "rate must be a number"),
        ("villain.json", json.dumps({"comedian": {"rate": 1.5}}), "outside [0, 1]"),
        ("villain.json", '{"comedian": {"rate": NaN}}', "rate must be a number"),
        (
            "villain.json",
            json.dumps({"comedian": {"rate": 0.5, "found": 10, "total": 200}}),
            "disagrees with found/total",
        ),
        ("villain.json", json.dumps([1, 2]), "expected an object"),
        ("villain.json", json.dumps({"villain": _entry(0.9)}), "no persona other than the source"),
        (
            "villain.json",
            '{"comedian": {"rate": 0.1}, "comedian": {"rate": 0.2}}',
            "appears twice",
        ),
    ],
)
def test_malformed_marker_eval_files(tmp_path: Path, file: str, content: str, fragment: str) -> None:
    folder = _marker_dir(tmp_path)
    _write(folder / file, content)
    with pytest.raises(InputError) as info:
        load_leakage(folder)
    assert str(folder / file) in str(info.value)
    assert fragment in str(info.value)


def test_marker_eval_dir_with_only_summaries(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    _json(folder / "villain_summary.json", {"source": "villain"})
    with pytest.raises(InputError, match="no <source>.json"):
        load_leakage(folder)


# --- the real reference results --------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_leakage() -> pd.DataFrame:
    assert MARKER_EVAL.is_dir(), f"the bundled study's results are missing: {MARKER_EVAL}"
    return load_leakage(MARKER_EVAL)


def test_reference_marker_eval_has_550_directed_pairs(reference_leakage: pd.DataFrame) -> None:
    frame = reference_leakage
    assert frame.shape == (550, 4)
    assert sorted(frame["source"].unique()) == sorted(SOURCES)
    assert (frame.groupby("source").size() == 110).all()
    assert not frame.duplicated(["source", "target"]).any()
    assert (frame["source"] != frame["target"]).all()
    assert frame["rate"].between(0, 1).all()
    # Each source's 10 fellow core personas are its 'original' category: 50 directed pairs.
    assert (frame["category"] == "original").sum() == 50


def test_reference_rates_agree_with_summaries(reference_leakage: pd.DataFrame) -> None:
    means = reference_leakage.groupby("source")["rate"].mean()
    maxima = reference_leakage.groupby("source")["rate"].max()
    for source in SOURCES:
        summary = json.loads((MARKER_EVAL / f"{source}_summary.json").read_text())
        assert means[source] == pytest.approx(summary["mean_bystander"], abs=1e-12)
        assert maxima[source] == pytest.approx(summary["max_bystander"], abs=1e-12)
    villain = reference_leakage.set_index(["source", "target"])["rate"]
    assert villain[("villain", "hacker_villain")] == 1.0


# --- overlap with the run's personas ---------------------------------------------------------

RUN = ["villain", "comedian", "assistant"]


def test_partial_overlap_keeps_the_run_pairs_and_lists_what_was_dropped(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "t.csv",
        "source,target,rate\nvillain,comedian,0.2\ncomedian,villain,0.3\nvillain,librarian,0.4\npirate,comedian,0.5\n",
    )
    overlap = restrict_to_personas(load_leakage(path), RUN, path)
    assert list(zip(overlap.rows["source"], overlap.rows["target"], overlap.rows["rate"])) == [
        ("villain", "comedian", 0.2),
        ("comedian", "villain", 0.3),
    ]
    assert overlap.unknown_personas == ["librarian", "pirate"]
    assert overlap.dropped_pairs == [("villain", "librarian"), ("pirate", "comedian")]
    assert overlap.personas_without_rates == ["assistant"]
    assert overlap.report()["dropped_pairs"] == ["villain -> librarian", "pirate -> comedian"]


def test_full_overlap_drops_nothing(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", "source,target,rate\nvillain,comedian,0.2\ncomedian,assistant,0.3\n")
    overlap = restrict_to_personas(load_leakage(path), RUN, path)
    assert len(overlap.rows) == 2
    assert overlap.report() == {
        "unknown_personas": [],
        "n_dropped_pairs": 0,
        "dropped_pairs": [],
        "personas_without_rates": [],
    }


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("source,target,rate\npirate,librarian,0.2\nlibrarian,pirate,0.1\n", "the two sets do not overlap"),
        # One shared persona but no pair with both ends in the run: nothing to correlate either.
        ("source,target,rate\nvillain,librarian,0.2\npirate,villain,0.1\n", "they share only villain"),
    ],
)
def test_no_pair_among_the_run_personas_names_the_file_and_both_sets(
    tmp_path: Path, content: str, fragment: str
) -> None:
    path = _write(tmp_path / "other.csv", content)
    with pytest.raises(InputError) as info:
        restrict_to_personas(load_leakage(path), RUN, path)
    message = str(info.value)
    assert str(path) in message and fragment in message
    assert (
        "personas in the file: librarian, pirate" in message
        or "personas in the file: librarian, pirate, villain" in message
    )
    assert "personas of the run: villain, comedian, assistant" in message


def test_long_persona_lists_are_cut_in_the_message(tmp_path: Path) -> None:
    names = [f"p{k:03d}" for k in range(40)]
    path = _write(
        tmp_path / "many.csv", "source,target,rate\n" + "".join(f"{a},{b},0.1\n" for a, b in zip(names, names[1:]))
    )
    with pytest.raises(InputError, match=r"p011, … \(40 in all\)"):
        restrict_to_personas(load_leakage(path), RUN, path)
