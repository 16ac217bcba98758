"""Load directed marker-leakage rates: how often a marker trained into persona A (the source)
appears in completions under persona B (the target).

Every loader returns a pandas DataFrame with one row per directed pair and columns
``source``, ``target``, ``rate`` (float in [0, 1]), plus ``category`` where the input has one.
Accepted inputs:

- a table file: CSV with header ``source,target,rate``; a JSON list of
  ``{"source", "target", "rate"}`` objects; or JSON ``{source: {target: rate}}``;
- a folder of marker-eval results, ``<source>.json`` = ``{target: {rate, found, total, category,
  ...}}`` (the format of the earlier study; ``*_summary.json`` files are ignored).

Files are read as UTF-8, UTF-8 with a byte-order mark, or UTF-16 with one; any other encoding is
refused saying what it looks like (persona_assets.inputs.text_files). A CSV problem names the file's
line as an editor numbers it; quoted values are cut (errors.quoted).

`restrict_to_personas` keeps the rows among a run's personas: a table that shares no pair with
the run is an error (most likely the wrong file), a partial overlap proceeds and says what it
dropped.

A pair's rate is the leakage from source to target only: rows with source == target would be the
source's own marker rate, which is not leakage, so tables must not contain them and the folder
loader leaves them out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from persona_assets.runs.errors import InputError, quoted
from persona_assets.inputs.text_files import decode_text_file, read_csv_table

COLUMNS = ["source", "target", "rate"]

# A marker-eval rate is found / total; an earlier tool may have rounded it, so allow that much.
RATE_ROUNDING_TOLERANCE = 1e-3


class _DuplicateKey(Exception):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.load keeps the last of two equal keys without a word; a repeated persona is a data
    # error (two rates for one pair), so it must surface.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def read_json_file(path: Path) -> Any:
    """Parse a JSON file; InputError naming the file when it is unreadable, not JSON, or repeats
    a key inside one object (shared with the legacy-format importers)."""
    text = decode_text_file(path)  # UTF-8 (a BOM allowed) or UTF-16 with a BOM; otherwise says which
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except _DuplicateKey as exc:
        raise InputError(f"{path}: key {quoted(exc.args[0])} appears twice in one object") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from exc


def _is_rate_number(value: Any) -> bool:
    # bool is an int subclass; True as a rate is a data error, not 1.0.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _rows_from_json(data: Any, path: Path) -> list[dict[str, Any]]:
    if isinstance(data, list):
        rows = []
        for i, item in enumerate(data):
            if not isinstance(item, dict):
                raise InputError(f"{path}: item {i} is not an object with source, target, rate")
            missing = [c for c in COLUMNS if c not in item]
            if missing:
                raise InputError(f"{path}: item {i} lacks {', '.join(missing)}")
            rows.append(item)
        return rows
    if isinstance(data, dict):
        if data and all(isinstance(v, dict) and "rate" in v and "total" in v for v in data.values()):
            raise InputError(
                f"{path}: looks like a single marker-eval file ({{target: {{rate, total, ...}}}}); "
                "pass the folder that holds it, so the source is taken from the file name"
            )
        rows = []
        for source, targets in data.items():
            if not isinstance(targets, dict):
                raise InputError(
                    f"{path}: value for source {quoted(source)} must be an object {{target: rate}}, "
                    f"got {type(targets).__name__}"
                )
            for target, rate in targets.items():
                rows.append({"source": source, "target": target, "rate": rate})
        return rows
    raise InputError(
        f"{path}: expected a JSON list of {{source, target, rate}} objects or "
        f"{{source: {{target: rate}}}}, got {type(data).__name__}"
    )


def _shown(name: Any) -> str:
    return name if isinstance(name, str) and len(name) <= 80 else quoted(name, 80)


def _pair(frame: pd.DataFrame, i: int) -> str:
    return f"{_shown(frame['source'].iloc[i])} -> {_shown(frame['target'].iloc[i])}"


def _validate(frame: pd.DataFrame, path: Path, where: Sequence[str] | None = None) -> pd.DataFrame:
    """Check names, rates and uniqueness; return the frame with clean dtypes. `where[i]` says where
    row i is in the file ("line 7"), for the messages."""
    if frame.empty:
        raise InputError(f"{path}: no leakage rows")
    where = list(where) if where is not None else [f"row {i}" for i in range(len(frame))]
    for col in ("source", "target"):
        bad = frame[col].map(lambda v: not isinstance(v, str) or not v.strip())
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise InputError(
                f"{path}: {where[i]}: {col} must be a non-empty persona name, got {quoted(frame[col].iloc[i])}"
            )
    rates = []
    for i, value in enumerate(frame["rate"]):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                value = None
        if not _is_rate_number(value) or math.isnan(value):
            raise InputError(
                f"{path}: {where[i]} ({_pair(frame, i)}): rate must be a number, got {quoted(frame['rate'].iloc[i])}"
            )
        if not 0.0 <= value <= 1.0:
            raise InputError(f"{path}: {where[i]} ({_pair(frame, i)}): rate {value} outside [0, 1]")
        rates.append(float(value))
    frame = frame.assign(rate=rates)
    self_pairs = frame[frame["source"] == frame["target"]]
    if not self_pairs.empty:
        raise InputError(
            f"{path}: {len(self_pairs)} row(s) with source == target "
            f"(e.g. {quoted(self_pairs['source'].iloc[0])}); leakage is between different personas"
        )
    dup = frame.duplicated(["source", "target"], keep=False)
    if dup.any():
        pairs = frame.loc[dup, ["source", "target"]].drop_duplicates().head(3)
        shown = ", ".join(f"{_shown(s)} -> {_shown(t)}" for s, t in pairs.itertuples(index=False))
        raise InputError(f"{path}: duplicate (source, target) pairs: {shown}")
    out = frame.reset_index(drop=True)
    out["source"] = out["source"].astype(str)
    out["target"] = out["target"].astype(str)
    return out


def load_leakage_table(path: Path) -> pd.DataFrame:
    """Read a leakage table from CSV (header ``source,target,rate``) or JSON (list or nested).

    Extra CSV columns other than ``category`` are dropped, so downstream code sees one shape.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    where = None
    if suffix == ".csv":
        # Every value stays a string (a persona called "NA" or "1" must not turn into NaN or an int);
        # each row keeps the file line it starts on, so messages say "line 7" as an editor shows it.
        table = read_csv_table(path)
        missing = [c for c in COLUMNS if c not in table.header]
        if missing:
            raise InputError(
                f"{path}: missing column(s) {', '.join(missing)}; "
                f"expected header source,target,rate, found {quoted(', '.join(table.header))}"
            )
        keep = COLUMNS + (["category"] if "category" in table.header else [])
        frame = pd.DataFrame([[row[c] for c in keep] for row in table.rows], columns=keep, dtype=object)
        # An empty CSV cell is a missing rate, reported as such rather than as "not a number".
        frame["rate"] = frame["rate"].map(lambda s: float("nan") if s.strip() == "" else s)
        where = [f"line {line}" for line in table.lines]
    elif suffix == ".json":
        data = read_json_file(path)
        rows = _rows_from_json(data, path)
        where = [
            f"item {i}" if isinstance(data, list) else f"source {_shown(row['source'])}" for i, row in enumerate(rows)
        ]
        frame = pd.DataFrame(rows)
        if frame.empty:
            raise InputError(f"{path}: no leakage rows")
        keep = COLUMNS + (["category"] if "category" in frame.columns else [])
        frame = frame[keep]
    else:
        raise InputError(f"{path}: unsupported file type {quoted(suffix)}; expected .csv or .json")
    return _validate(frame, path, where)


def load_marker_eval_dir(path: Path) -> pd.DataFrame:
    """Read a folder of ``<source>.json`` marker-eval results into directed leakage rows.

    Each file maps every evaluated persona to ``{rate, found, total, category, ...}``; the
    source's own entry is its marker rate (not leakage) and is left out. Rows come sorted by
    source then in file order, with ``category`` when the files give one.
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: not a folder of marker-eval <source>.json files")
    files = sorted(p for p in path.glob("*.json") if p.is_file() and not p.name.endswith("_summary.json"))
    if not files:
        raise InputError(f"{path}: no <source>.json marker-eval files (only *_summary.json?)")
    rows: list[dict[str, Any]] = []
    for file in files:
        source = file.stem
        data = read_json_file(file)
        if not isinstance(data, dict) or not data:
            raise InputError(f"{file}: expected an object {{persona: {{rate, ...}}}}")
        for target, entry in data.items():
            if target == source:
                continue
            if not isinstance(entry, dict) or "rate" not in entry:
                raise InputError(f"{file}: entry {target!r} lacks a rate")
            rate = entry["rate"]
            if not _is_rate_number(rate) or math.isnan(rate):
                raise InputError(f"{file}: entry {target!r}: rate must be a number, got {rate!r}")
            if not 0.0 <= rate <= 1.0:
                raise InputError(f"{file}: entry {target!r}: rate {rate} outside [0, 1]")
            found, total = entry.get("found"), entry.get("total")
            if _is_rate_number(found) and _is_rate_number(total) and total > 0:
                if abs(rate - found / total) > RATE_ROUNDING_TOLERANCE:
                    raise InputError(
                        f"{file}: entry {target!r}: rate {rate} disagrees with found/total = {found}/{total}"
                    )
            row = {"source": source, "target": target, "rate": rate}
            if "category" in entry:
                row["category"] = entry["category"]
            rows.append(row)
        if not any(r["source"] == source for r in rows):
            raise InputError(f"{file}: no persona other than the source {source!r}")
    return _validate(pd.DataFrame(rows), path, [f"{row['source']}.json" for row in rows])


def load_leakage(path: Path) -> pd.DataFrame:
    """Load leakage from a marker-eval folder or a table file, whichever ``path`` is."""
    path = Path(path)
    if path.is_dir():
        return load_marker_eval_dir(path)
    if path.is_file():
        return load_leakage_table(path)
    raise InputError(f"{path}: no such file or folder")


# Persona lists in messages are cut here: a marker-eval folder can name over a hundred personas.
MAX_NAMES_SHOWN = 12


def names_for_message(names: Sequence[str]) -> str:
    """Comma-separated names, cut after MAX_NAMES_SHOWN with the total count."""
    shown = ", ".join(names[:MAX_NAMES_SHOWN])
    return shown if len(names) <= MAX_NAMES_SHOWN else f"{shown}, … ({len(names)} in all)"


@dataclass(frozen=True)
class PersonaOverlap:
    """The leakage rows among a run's personas, and what was left out to get them."""

    rows: pd.DataFrame
    unknown_personas: list[str]  # named in the file, not personas of the run
    dropped_pairs: list[tuple[str, str]]  # (source, target) rows with an unknown persona
    personas_without_rates: list[str]  # personas of the run in no kept row

    def report(self) -> dict[str, Any]:
        return {
            "unknown_personas": self.unknown_personas,
            "n_dropped_pairs": len(self.dropped_pairs),
            "dropped_pairs": [f"{s} -> {t}" for s, t in self.dropped_pairs],
            "personas_without_rates": self.personas_without_rates,
        }


def restrict_to_personas(
    table: pd.DataFrame, personas: Sequence[str], path: Path, *, personas_of: str = "the run"
) -> PersonaOverlap:
    """Keep the rows whose source and target are both among `personas`.

    InputError naming `path` and both persona sets when no row is left: the table describes
    other personas than the run (`personas_of` says whose personas these are in the message), and
    every leakage analysis would be empty.
    """
    run = list(personas)
    known = set(run)
    inside = table["source"].isin(known) & table["target"].isin(known)
    in_file = sorted(set(table["source"]) | set(table["target"]))
    if not inside.any():
        shared = [n for n in in_file if n in known]
        detail = (
            f"they share only {names_for_message(shared)}, and no (source, target) pair has both in the run"
            if shared
            else "the two sets do not overlap"
        )
        raise InputError(
            f"{path}: no leakage pair among the personas of {personas_of} ({detail}); "
            f"personas in the file: {names_for_message(in_file)}; personas of {personas_of}: {names_for_message(run)}"
        )
    kept = table[inside].reset_index(drop=True)
    dropped = table[~inside]
    covered = set(kept["source"]) | set(kept["target"])
    return PersonaOverlap(
        rows=kept,
        unknown_personas=[n for n in in_file if n not in known],
        dropped_pairs=list(zip(dropped["source"], dropped["target"])),
        personas_without_rates=[n for n in run if n not in covered],
    )
