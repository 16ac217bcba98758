"""Mutation check of the write guarantees: remove each one from a copy of the code and assert that
every test which claims to guard it fails (and that all of them pass on an unmutated copy).

Each mutation is an exact text replacement in one file; if the text is not found exactly once the
script stops with an error, so a refactor cannot silently turn a mutation into a no-op — update
the mutation together with the code. Every copy is fresh; the repository itself is never touched.

  python -m tests.mutations.run_mutations            # all mutations; exit 1 if any survives
  python -m tests.mutations.run_mutations --list     # names and targets only

Also run by tests/test_mutations.py (marked slow, so part of `make test`).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COPIED = ["persona_assets", "resources", "tests", "pyproject.toml"]
CONCURRENCY_TESTS = "tests/test_concurrent_writes.py"


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS = [
    Mutation(
        "non-atomic write: atomic_write_bytes writes the file in place",
        "persona_assets/runs/storage.py",
        '    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")\n',
        "    path.write_bytes(data)\n    return\n    fd, tmp = tempfile.mkstemp(dir=path.parent, "
        'prefix=f".{path.name}.", suffix=".tmp")\n',
        (
            f"{CONCURRENCY_TESTS}::test_readers_during_writes_of_different_content_see_only_whole_files",
            f"{CONCURRENCY_TESTS}::test_a_writer_killed_mid_write_leaves_the_previous_file_whole",
        ),
    ),
    Mutation(
        "no lock: exclusive_lock takes no flock",
        "persona_assets/runs/storage.py",
        "        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)\n",
        "        pass\n",
        (
            f"{CONCURRENCY_TESTS}::test_concurrent_runs_adding_pairs_to_one_cache_entry_lose_none",
            f"{CONCURRENCY_TESTS}::test_concurrent_alert_appends_of_large_lines_keep_every_line_whole",
        ),
    ),
    Mutation(
        "no cache lock: DivergenceCache.put merges without the directory lock",
        "persona_assets/measure/divergence_store.py",
        "        with exclusive_lock(self.directory):\n            on_disk = self.get(key)\n",
        "        if True:\n            on_disk = self.get(key)\n",
        (f"{CONCURRENCY_TESTS}::test_concurrent_runs_adding_pairs_to_one_cache_entry_lose_none",),
    ),
    Mutation(
        "no alert lock: append_jsonl appends without the directory lock",
        "persona_assets/runs/alerts.py",
        "        with exclusive_lock(path.parent):\n            _append_all(path, line)\n",
        "        if True:\n            _append_all(path, line)\n",
        (f"{CONCURRENCY_TESTS}::test_concurrent_alert_appends_of_large_lines_keep_every_line_whole",),
    ),
    Mutation(
        "no rewrite protection: a run is published whether or not it completed",
        "persona_assets/runs/result_sets.py",
        "        if complete:\n            publish(data_dir, run_id, figures_dir)\n",
        "        if True:\n            publish(data_dir, run_id, figures_dir)\n",
        # (tests/test_versioned_results.py also fails under it, through the graph: too slow to repeat here)
        ("tests/runs/test_result_sets.py::test_a_complete_run_is_published_and_a_failed_one_is_not",),
    ),
    Mutation(
        "layered sets: publishing withdraws nothing, files of two experiments side by side",
        "persona_assets/runs/view_lineage.py",
        "    while (found := _first_inconsistency(candidate)) is not None:\n",
        "    while (found := None) is not None:\n",
        # (tests/test_published_set_consistency.py also fails under it, through the graph: too slow to repeat here)
        (
            "tests/runs/test_view_lineage.py::test_a_changed_input_withdraws_everything_computed_from_it_and_nothing_else",
            "tests/runs/test_view_lineage.py::test_side_files_go_with_their_asset_and_siblings_of_one_step_with_each_other",
        ),
    ),
]


class MutationTargetMissing(RuntimeError):
    pass


def copy_repository(destination: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=ignore)
        else:
            shutil.copy2(source, destination / name)


def apply(mutation: Mutation, root: Path) -> None:
    path = root / mutation.file
    text = path.read_text(encoding="utf-8")
    count = text.count(mutation.old)
    if count != 1:
        raise MutationTargetMissing(
            f"mutation {mutation.name!r}: its target text occurs {count} times in {mutation.file} (expected once); "
            "update the mutation in tests/mutations/run_mutations.py together with the code"
        )
    path.write_text(text.replace(mutation.old, mutation.new), encoding="utf-8")


def run_tests(root: Path, tests: tuple[str, ...]) -> subprocess.CompletedProcess:
    # The copy's code must win over any installed persona_assets: put it first on the path and
    # make the tests prove where they import it from.
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    probe = subprocess.run(
        [sys.executable, "-c", "import persona_assets.runs.storage as s; print(s.__file__)"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    if not Path(probe.stdout.strip()).resolve().is_relative_to(root.resolve()):
        raise RuntimeError(f"the copy imports persona_assets from {probe.stdout.strip()}, not from {root}")
    # Temp dirs beside the copy, on its (disk) filesystem, not on the tmpfs tests/conftest.py picks: the
    # concurrent-writer races the mutations remove show up on a disk and can go unseen on tmpfs.
    basetemp = root / ".pytest-tmp"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", f"--basetemp={basetemp}", *tests],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def failed_tests(pytest_output: str) -> set[str]:
    """Node ids of the failed tests in the short summary that `-rf` prints (FAILED <id> - …)."""
    return {line.split()[1] for line in pytest_output.splitlines() if line.startswith("FAILED ")}


def check_all(mutations: list[Mutation]) -> list[str]:
    """Problems found: an unmutated copy that fails, or a mutation no test catches."""
    problems = []
    every_test = tuple(dict.fromkeys(t for m in mutations for t in m.tests))
    with tempfile.TemporaryDirectory(prefix="mutations-") as base:
        baseline = Path(base) / "unmutated"
        copy_repository(baseline)
        started = time.monotonic()
        result = run_tests(baseline, every_test)
        print(
            f"unmutated: {'passes' if result.returncode == 0 else 'FAILS'} ({time.monotonic() - started:.1f} s)",
            flush=True,
        )
        if result.returncode != 0:
            problems.append(f"the unmutated copy fails its tests:\n{result.stdout[-3000:]}{result.stderr[-2000:]}")
        for i, mutation in enumerate(mutations):
            root = Path(base) / f"mutation_{i}"
            copy_repository(root)
            apply(mutation, root)
            started = time.monotonic()
            result = run_tests(root, mutation.tests)
            failed = failed_tests(result.stdout)
            survived_by = [t for t in mutation.tests if t not in failed]
            verdict = "caught by every test that guards it" if not survived_by else f"SURVIVED {', '.join(survived_by)}"
            print(f"{mutation.name}: {verdict} ({time.monotonic() - started:.1f} s)", flush=True)
            if survived_by:
                problems.append(f"mutation {mutation.name!r} survived {', '.join(survived_by)}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="print the mutations and their targets, run nothing")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="check everything this many times (to measure how reliably each is caught)",
    )
    args = parser.parse_args(argv)
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name}\n  in {m.file}, guarded by {', '.join(m.tests)}")
        return 0
    print(
        f"mutation check on {platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs), Python "
        f"{platform.python_version()}"
    )
    started = time.monotonic()
    try:
        problems = [p for _ in range(args.repeat) for p in check_all(MUTATIONS)]
    except MutationTargetMissing as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"total {time.monotonic() - started:.1f} s")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
