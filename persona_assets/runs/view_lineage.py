"""What each published file was computed from, and which files of a set still belong together.

A run records, for every asset it materializes, a lineage record under runs/<run id>/lineage/:

    <asset>.json             {"asset", "step", "file", "inputs": {upstream asset: sha256 of the file it read | null}}
    <asset>.side_files.json  the other files the asset wrote next to its own (generations.csv, pairs.csv, ...)
    <asset>.figures.json     the folder of the run's figures/ that the asset drew (withdrawn with it)
    computed/<asset>.*       a value an op computed but did not write (not selected), with its record

An *entry* of a published set is one asset's files from one run, with the digest (sha256) of the
asset's own file and the digests of the upstream files it was computed from. Files of one op that
computes several assets at once (the three divergence tables) also list each other as inputs.

`consistent_set` is the rule that keeps `outputs/` one experiment: an entry stays in the set only
if every input it was computed from is still in the set with the same digest (an input recorded as
absent must still be absent). Withdrawn entries are named with the reason; their files stay under
runs/<run id>/. Re-materializing an asset with the same bytes withdraws nothing.

No dagster import.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from persona_assets.runs.storage import exclusive_lock, read_json, write_json

LINEAGE = "lineage"
SIDE_FILES = ".side_files.json"
FIGURES = ".figures.json"
COMPUTED = "computed"
UNKNOWN_STEP = ""


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record_output(run_dir: Path, asset: str, step: str, file_name: str, inputs: Mapping[str, str | None]) -> None:
    """The asset's own file in this run, and the digest of each upstream file it read (None: none existed)."""
    record = {"asset": asset, "step": step, "file": file_name, "inputs": dict(inputs)}
    write_json(Path(run_dir) / LINEAGE / f"{asset}.json", record)


def record_side_file(run_dir: Path, owner: str, name: str) -> None:
    """`name` (in the run's outputs) belongs to asset `owner`: published and withdrawn with it."""
    directory = Path(run_dir) / LINEAGE
    with exclusive_lock(directory):
        path = directory / f"{owner}{SIDE_FILES}"
        names = set(read_json(path)) if path.is_file() else set()
        write_json(path, sorted(names | {name}))


def computed_file(run_dir: Path, asset: str, suffix: str) -> Path:
    """Where an op keeps a value it computed but did not write (the caller writes it as it would be published)."""
    return Path(run_dir) / LINEAGE / COMPUTED / f"{asset}{suffix}"


def record_computed(run_dir: Path, asset: str, step: str, file_name: str) -> None:
    """`asset` was computed in `step` next to the outputs it wrote, but not selected: the written ones are
    valid only next to these bytes of it."""
    record = {"asset": asset, "step": step, "file": file_name}
    write_json(Path(run_dir) / LINEAGE / COMPUTED / f"{asset}.record.json", record)


def _computed_digests(lineage: Path) -> dict[str, dict[str, str]]:
    """{step: {asset: digest}} of the values ops computed without writing them."""
    found: dict[str, dict[str, str]] = {}
    for path in sorted((lineage / COMPUTED).glob("*.record.json")) if (lineage / COMPUTED).is_dir() else []:
        record = read_json(path)
        found.setdefault(record["step"], {})[record["asset"]] = file_digest(lineage / COMPUTED / record["file"])
    return found


def record_figures(run_dir: Path, owner: str, directory: str) -> None:
    """The run's figures under `directory` (relative to its figures/ folder) were drawn by asset `owner`."""
    write_json(Path(run_dir) / LINEAGE / f"{owner}{FIGURES}", {"directory": directory})


def figures_of(run_dir: Path, owner: str) -> list[str]:
    """The figure files (relative to figures/) asset `owner` drew in that run; [] when it drew none."""
    claim = Path(run_dir) / LINEAGE / f"{owner}{FIGURES}"
    if not claim.is_file():
        return []
    figures = Path(run_dir) / "figures"
    drawn = figures / read_json(claim)["directory"]
    return sorted(str(p.relative_to(figures)) for p in drawn.rglob("*") if p.is_file() and not p.name.startswith("."))


@dataclass(frozen=True)
class Entry:
    """One asset's files from one run, as they enter a published set."""

    asset: str
    run_id: str
    files: tuple[str, ...]
    digest: str
    inputs: dict[str, str | None] = field(default_factory=dict)
    step: str = UNKNOWN_STEP
    together: dict[str, str] = field(default_factory=dict)  # outputs its op computed next to it (written or not)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "files": list(self.files)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Entry:
        return cls(
            asset=data["asset"],
            run_id=data["run_id"],
            files=tuple(data["files"]),
            digest=data["digest"],
            inputs=dict(data.get("inputs", {})),
            step=data.get("step", UNKNOWN_STEP),
            together=dict(data.get("together", {})),
        )


def asset_of_file(name: str) -> str:
    """The asset a file without a lineage record is taken to belong to: its name less the suffix."""
    return name.rsplit(".", 1)[0]


def _visible_files(root: Path) -> set[str]:
    if not root.is_dir():
        return set()
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")}


def _entries_by_name(root: Path, names: set[str], run_of: Mapping[str, str], default_run: str) -> dict[str, Entry]:
    """Entries without lineage: files grouped by `asset_of_file`; the digest is the JSON file's (read first)."""
    groups: dict[str, list[str]] = {}
    for name in sorted(names):
        groups.setdefault(asset_of_file(name), []).append(name)
    entries = {}
    for asset, files in groups.items():
        files.sort(key=lambda n: (not n.endswith(".json"), n))
        entries[asset] = Entry(asset, run_of.get(files[0], default_run), tuple(files), file_digest(root / files[0]))
    return entries


def produced_entries(run_dir: Path, run_id: str, outputs: Path) -> dict[str, Entry]:
    """The run's entries from its lineage records; a file no record claims is an entry of its own, without inputs."""
    lineage = Path(run_dir) / LINEAGE
    files = _visible_files(outputs)
    entries: dict[str, Entry] = {}
    claimed: set[str] = set()
    for path in sorted(lineage.glob("*.json")) if lineage.is_dir() else []:
        if path.name.endswith((SIDE_FILES, FIGURES)):
            continue
        record = read_json(path)
        if record["file"] not in files:
            continue
        side = lineage / f"{record['asset']}{SIDE_FILES}"
        own = (record["file"], *sorted(n for n in (read_json(side) if side.is_file() else []) if n in files))
        claimed.update(own)
        entries[record["asset"]] = Entry(
            record["asset"], run_id, own, file_digest(outputs / record["file"]), dict(record["inputs"]), record["step"]
        )
    for asset, entry in _entries_by_name(outputs, files - claimed, {}, run_id).items():
        entries.setdefault(asset, entry)
    # Outputs of one step were computed together (written or not): each is valid only next to the others' bytes.
    computed = _computed_digests(lineage)
    by_step: dict[str, list[Entry]] = {}
    for entry in entries.values():
        if entry.step != UNKNOWN_STEP:
            by_step.setdefault(entry.step, []).append(entry)
    for step, siblings in by_step.items():
        for entry in siblings:
            together = {**computed.get(step, {}), **{s.asset: s.digest for s in siblings}}
            together.pop(entry.asset, None)
            entries[entry.asset] = Entry(
                entry.asset, run_id, entry.files, entry.digest, entry.inputs, entry.step, together
            )
    return entries


def entries_without_lineage(view_outputs: Path, sources: Mapping[str, str], default_run: str) -> dict[str, Entry]:
    """A set published before lineage was recorded: its files grouped by asset, inputs unknown (kept as they are)."""
    return _entries_by_name(view_outputs, _visible_files(view_outputs), sources, default_run)


def consistent_set(
    previous: Mapping[str, Entry], produced: Mapping[str, Entry]
) -> tuple[dict[str, Entry], dict[str, dict[str, Any]]]:
    """(the entries of the new set, {asset: why withdrawn}) — the run's entries on top of the previous set,
    less every entry computed from an input the new set does not hold with the same bytes.

    Where the run's entry and an earlier one disagree (the run computed a sibling table with other bytes
    than the earlier one shown), the earlier one goes: the run is the newer experiment."""
    candidate = {**previous, **produced}
    # A run's asset replaces all of that asset's earlier files (a side file it no longer writes goes too),
    # and an earlier entry holding a file the run wrote again goes as a whole.
    written = {name for entry in produced.values() for name in entry.files}
    for asset, entry in list(candidate.items()):
        if asset not in produced and written & set(entry.files):
            del candidate[asset]
    withdrawn: dict[str, dict[str, Any]] = {}
    while (found := _first_inconsistency(candidate)) is not None:
        asset, upstream, reason = found
        if asset in produced and upstream in candidate[asset].together and upstream not in produced:
            digest, held = candidate[asset].together[upstream], candidate[upstream].digest
            reason = (
                f"run {candidate[asset].run_id} computed {asset} next to {upstream} "
                f"with sha256 {digest[:12]}, not {held[:12]}"
            )
            asset = upstream
        entry = candidate.pop(asset)
        withdrawn[asset] = {"run_id": entry.run_id, "files": list(entry.files), "reason": reason}
    return candidate, withdrawn


def _first_inconsistency(candidate: Mapping[str, Entry]) -> tuple[str, str, str] | None:
    """(asset, the input that does not match, why) for the first entry computed from other bytes than the set holds.

    An input it read must be in the set with the same bytes (or absent, if it read none); an output its
    op computed next to it must have the same bytes if the set holds it (it may hold none)."""
    for asset, entry in sorted(candidate.items()):
        for upstream, digest in sorted(entry.inputs.items()):
            now = candidate.get(upstream)
            if (now.digest if now is not None else None) == digest:
                continue
            was = "no file" if digest is None else f"sha256 {digest[:12]}"
            shown = "holds none" if now is None else f"holds {now.files[0]} of run {now.run_id} ({now.digest[:12]})"
            return asset, upstream, f"computed from {upstream} ({was}); the set now {shown}"
        for sibling, digest in sorted(entry.together.items()):
            now = candidate.get(sibling)
            if now is not None and now.digest != digest:
                shown = f"{now.files[0]} of run {now.run_id} ({now.digest[:12]})"
                return asset, sibling, f"computed next to {sibling} (sha256 {digest[:12]}); the set now holds {shown}"
    return None
