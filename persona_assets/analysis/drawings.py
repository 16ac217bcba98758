"""Each chart's PNG, drawn by vl-convert once per spec and then kept by content in the user's cache.

vl-convert takes 0.04–0.16 s to draw one chart of a run (its JavaScript engine lays the chart out; the
scale hardly matters), and the first drawing in a process starts that engine (~0.3 s). The same spec
always gives the same bytes, so a spec drawn before is read back instead:
- a figures step re-run on results that changed only in part (another kill threshold, another
  bootstrap setting) draws only the charts that changed;
- the test suite, whose runs draw the same few dozen specs again and again, draws each of them once.

The key is a SHA-256 of the spec (JSON with sorted keys), the scale and vl-convert's version (which fixes the
Vega and Vega-Lite it draws with). The fonts come from vl-convert and the machine: after changing the
machine's fonts, delete the folder. An entry that is not a whole PNG (a torn write) is drawn again. The
folder keeps the `KEPT_DRAWINGS` most recently used entries (a run's charts are 60–350 KB each). A cache that
cannot be written costs only the drawing. No dagster import.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from persona_assets.runs.storage import atomic_write_bytes, default_cache_dir

KEPT_DRAWINGS = 400
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"  # the last chunk of every PNG: its type and its CRC


def drawings_dir(cache_dir: Path | None = None) -> Path:
    return (cache_dir or default_cache_dir()) / "drawings"


def drawing_key(spec: dict[str, Any], scale: float) -> str:
    """What identifies a drawing: the spec, the scale and the vl-convert that draws it."""
    import vl_convert as vlc

    text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"vl-convert {vlc.__version__} scale {float(scale)!r}\n{text}".encode()).hexdigest()


def is_whole_png(data: bytes) -> bool:
    return data.startswith(PNG_SIGNATURE) and data.endswith(PNG_END)


def png_drawing(spec: dict[str, Any], *, scale: float, cache_dir: Path | None = None) -> bytes:
    """The PNG of a Vega-Lite `spec` at `scale`: read from the cache when drawn before, else drawn and kept."""
    import vl_convert as vlc

    folder = drawings_dir(cache_dir)
    path = folder / f"{drawing_key(spec, scale)}.png"
    try:
        kept = path.read_bytes()
    except OSError:
        kept = b""
    if is_whole_png(kept):
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: kept longest
        return kept
    png = vlc.vegalite_to_png(spec, scale=scale)
    with contextlib.suppress(OSError):  # read-only or full: the next run draws it again
        atomic_write_bytes(path, png)
        keep_newest(folder, KEPT_DRAWINGS)
    return png


def keep_newest(folder: Path, kept: int) -> None:
    """Delete all but the `kept` most recently used drawings in `folder` (files being written are left alone)."""
    with os.scandir(folder) as entries:
        drawings = [
            (entry.stat().st_mtime_ns, entry.path)
            for entry in entries
            if entry.name.endswith(".png") and not entry.name.startswith(".")
        ]
    drawings.sort()
    for _, path in drawings[: max(0, len(drawings) - kept)]:
        with contextlib.suppress(OSError):  # another process pruned it first
            os.unlink(path)
