"""List the runs kept under the data directory, and prune old ones.

    python -m persona_assets.results_cli list
    python -m persona_assets.results_cli prune --keep 5     # the published set is always kept

The data directory is PERSONA_DATA_DIR (default data/), as for the runs themselves.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from persona_assets.runs import result_sets
from persona_assets.environment import data_dir_for_scripts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="every run: id, status (running | complete | failed), start, size, published")
    prune = sub.add_parser("prune", help="delete all but the newest runs (never the published one)")
    prune.add_argument("--keep", type=int, required=True, help="how many runs to keep (≥ 0)")
    args = parser.parse_args(argv)
    data_dir = Path(data_dir_for_scripts()[0]).resolve()
    if args.command == "list":
        runs = result_sets.list_runs(data_dir)
        print(result_sets.describe(runs) if runs else f"no runs under {data_dir}")
        return 0
    if args.keep < 0:
        parser.error("--keep must be ≥ 0")
    removed = result_sets.prune(data_dir, args.keep)
    print(f"removed {len(removed)} run(s) from {data_dir}" + (": " + ", ".join(removed) if removed else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
