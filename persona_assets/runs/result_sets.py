"""Versioned result sets: every run's files kept under its run id, `outputs/` the latest complete set.

    <data>/runs/<run id>/run.json      status (running | complete | failed), run config, times, failed steps
    <data>/runs/<run id>/outputs/      what that run materialized (JSON, CSV)
    <data>/runs/<run id>/figures/      the figures it drew
    <data>/runs/<run id>/steps/        values passed between the ops of a graph asset
    <data>/runs/<run id>/lineage/      what each asset it wrote was computed from (view_lineage)
    <data>/views/<run id>/outputs/     a published set: the previous set with this run's files on top
    <data>/outputs -> views/<run id>/outputs   (a symbolic link, swapped atomically)

A run is published only when every step it planned succeeded: then the view is built (hard links,
so nothing is copied twice), `outputs` is re-pointed in one rename, and its figures are copied
into the figures directory file by file (each atomically). A failed, cancelled or killed run never
changes `outputs/` or the figures directory; its own files stay under runs/<run id>/, labelled in
run.json. `view.json` in each view says which run every file came from.

A run that materializes only part of the graph is published on top of the previous set: files of
assets it did not materialize are the earlier runs' (view.json names them) — as long as they still
fit the set. An earlier file computed from an input that this run changed (other personas,
questions, model or settings give other bytes) is withdrawn from the view, and so is everything
computed from it (view_lineage.consistent_set); view.json lists what was withdrawn and why. So
`outputs/` is always one experiment, perhaps an incomplete one.

No dagster import.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from persona_assets.runs import view_lineage
from persona_assets.runs.storage import atomic_write_bytes, exclusive_lock, read_json, write_json

RUNS, VIEWS, OUTPUTS, MANIFEST, VIEW_MANIFEST = "runs", "views", "outputs", "run.json", "view.json"
RUNNING, COMPLETE, FAILED = "running", "complete", "failed"
BEFORE_VERSIONING = "_before_versioning"


def run_dir(data_dir: Path, run_id: str) -> Path:
    return Path(data_dir) / RUNS / run_id


def start_run(data_dir: Path, run_id: str, run_config: dict[str, Any]) -> None:
    """Write the run's manifest once (status running) so even a killed run is listed."""
    manifest = run_dir(data_dir, run_id) / MANIFEST
    if manifest.is_file():
        return
    write_json(manifest, {"run_id": run_id, "status": RUNNING, "started": time.time(), "run_config": run_config})


def _files(root: Path) -> Iterable[Path]:
    return (p for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith("."))


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def current_view(data_dir: Path) -> Path | None:
    """The outputs folder the `outputs` link points at (an older real folder is adopted as a view)."""
    data_dir = Path(data_dir)
    outputs = data_dir / OUTPUTS
    if outputs.is_symlink():
        return outputs.resolve()
    if outputs.is_dir():  # written before results were versioned: keep it as the base set
        adopted = data_dir / VIEWS / BEFORE_VERSIONING / OUTPUTS
        adopted.parent.mkdir(parents=True, exist_ok=True)
        os.replace(outputs, adopted)
        _point_outputs_at(data_dir, adopted)
        return adopted
    return None


def _point_outputs_at(data_dir: Path, view_outputs: Path) -> None:
    link = Path(data_dir) / OUTPUTS
    tmp = link.with_name(f".{OUTPUTS}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(os.path.relpath(view_outputs, link.parent), tmp)
    os.replace(tmp, link)  # one rename: readers see the old set or the new one, never a mix


def publish(data_dir: Path, run_id: str, figures_dir: Path) -> Path:
    """Make the run's outputs the latest set: on top of the previous one, less what no longer fits it
    (view_lineage.consistent_set); copy its figures."""
    data_dir = Path(data_dir)
    own = run_dir(data_dir, run_id) / OUTPUTS
    with exclusive_lock(data_dir / VIEWS):
        previous = current_view(data_dir)
        view = data_dir / VIEWS / run_id / OUTPUTS
        if view.exists():
            shutil.rmtree(view)
        earlier = _view_entries(previous) if previous is not None else {}
        produced = view_lineage.produced_entries(run_dir(data_dir, run_id), run_id, own)
        kept, withdrawn_now = view_lineage.consistent_set(earlier, produced)
        sources: dict[str, str] = {}
        for asset, entry in kept.items():
            root = own if asset in produced else previous
            for name in entry.files:
                _link_or_copy(root / name, view / name)
                sources[name] = entry.run_id
        view.mkdir(parents=True, exist_ok=True)
        earlier_withdrawn = _view_manifest(previous).get("withdrawn", {}) if previous is not None else {}
        withdrawn = {a: w for a, w in earlier_withdrawn.items() if a not in kept}
        withdrawn.update({a: {**w, "withdrawn_by_run": run_id} for a, w in withdrawn_now.items()})
        write_json(
            view.parent / VIEW_MANIFEST,
            {
                "run_id": run_id,
                "published": time.time(),
                "sources": sources,
                "entries": {asset: entry.to_dict() for asset, entry in sorted(kept.items())},
                "withdrawn": withdrawn,
            },
        )
        _point_outputs_at(data_dir, view)
        for asset, why in withdrawn_now.items():
            _withdraw_figures(data_dir, Path(figures_dir), asset, why["run_id"])
    figures = run_dir(data_dir, run_id) / "figures"
    if figures.is_dir():
        for path in _files(figures):
            atomic_write_bytes(Path(figures_dir) / path.relative_to(figures), path.read_bytes())
    return view


def _withdraw_figures(data_dir: Path, figures_dir: Path, asset: str, source_run: str) -> None:
    """Remove from the figures directory the copies of figures a withdrawn asset drew (the run keeps its own)."""
    drawn = run_dir(data_dir, source_run) / "figures"
    for name in view_lineage.figures_of(run_dir(data_dir, source_run), asset):
        shown = figures_dir / name
        if shown.is_file() and shown.read_bytes() == (drawn / name).read_bytes():  # not since redrawn by another run
            shown.unlink()


def _view_manifest(view_outputs: Path) -> dict[str, Any]:
    manifest = view_outputs.parent / VIEW_MANIFEST
    return read_json(manifest) if manifest.is_file() else {}


def _view_entries(view_outputs: Path) -> dict[str, view_lineage.Entry]:
    manifest = _view_manifest(view_outputs)
    if "entries" in manifest:
        return {asset: view_lineage.Entry.from_dict(entry) for asset, entry in manifest["entries"].items()}
    return view_lineage.entries_without_lineage(view_outputs, manifest.get("sources", {}), BEFORE_VERSIONING)


def withdrawn_from_view(data_dir: Path, run_id: str | None = None) -> dict[str, dict[str, Any]]:
    """Entries missing from the published set because they no longer fit it, with why (only those `run_id` withdrew)."""
    view = current_view(data_dir)
    withdrawn = _view_manifest(view).get("withdrawn", {}) if view is not None else {}
    return {a: w for a, w in withdrawn.items() if run_id is None or w.get("withdrawn_by_run") == run_id}


def finish_run(
    data_dir: Path, run_id: str, *, complete: bool, failed_steps: list[str], figures_dir: Path
) -> str | None:
    """Record how the run ended; publish it when complete. Returns the new status (None: still running)."""
    manifest_path = run_dir(data_dir, run_id) / MANIFEST
    with exclusive_lock(run_dir(data_dir, run_id)):
        manifest = read_json(manifest_path) if manifest_path.is_file() else {"run_id": run_id}
        if manifest.get("status") in (COMPLETE, FAILED):
            return manifest["status"]  # decided already (several resources or processes tear down)
        if complete:
            publish(data_dir, run_id, figures_dir)
            status = COMPLETE
        elif failed_steps:
            status = FAILED
        else:
            return None
        write_json(manifest_path, {**manifest, "status": status, "ended": time.time(), "failed_steps": failed_steps})
        return status


def list_runs(data_dir: Path) -> list[dict[str, Any]]:
    """Every run folder with its manifest, oldest first; `published` marks the one `outputs/` shows."""
    data_dir = Path(data_dir)
    link = data_dir / OUTPUTS
    shown = link.resolve().parent.name if link.is_symlink() else None
    runs = []
    for folder in sorted((data_dir / RUNS).glob("*")):
        manifest = folder / MANIFEST
        info = read_json(manifest) if manifest.is_file() else {"run_id": folder.name, "status": "unknown"}
        info["published"] = folder.name == shown
        info["size_bytes"] = sum(p.stat().st_size for p in _files(folder))
        runs.append(info)
    return sorted(runs, key=lambda r: r.get("started", 0))


def prune(data_dir: Path, keep: int) -> list[str]:
    """Delete all but the `keep` newest runs (and their views); never the published set. Returns run ids removed."""
    data_dir = Path(data_dir)
    runs = list_runs(data_dir)
    removable = [r for r in runs if not r["published"]][: max(0, len(runs) - keep)]
    removed = []
    with exclusive_lock(data_dir / VIEWS):
        for info in removable:
            shutil.rmtree(run_dir(data_dir, info["run_id"]), ignore_errors=True)
            shutil.rmtree(data_dir / VIEWS / info["run_id"], ignore_errors=True)
            removed.append(info["run_id"])
    return removed


def describe(runs: list[dict[str, Any]]) -> str:
    lines = [f"{'run id':38s} {'status':9s} {'started (UTC)':20s} {'size':>9s}  published"]
    for r in runs:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["started"])) if r.get("started") else "?"
        status = r.get("status", "unknown")
        lines.append(
            f"{r['run_id']:38s} {status:9s} {started:20s} {r['size_bytes'] / 1e6:8.1f}M  "
            f"{'yes' if r['published'] else ''}"
        )
    return "\n".join(lines)
