"""The write guarantees' tests catch the removal of each guarantee (tests/mutations/run_mutations.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.mutations import run_mutations


@pytest.mark.parametrize("mutation", run_mutations.MUTATIONS, ids=lambda m: m.name.split(":")[0])
def test_every_mutation_targets_text_that_occurs_once(mutation, tmp_path):
    (tmp_path / mutation.file).parent.mkdir(parents=True)
    (tmp_path / mutation.file).write_text((REPO / mutation.file).read_text(encoding="utf-8"), encoding="utf-8")
    run_mutations.apply(mutation, tmp_path)
    assert (tmp_path / mutation.file).read_text(encoding="utf-8") != (REPO / mutation.file).read_text(encoding="utf-8")


def test_a_mutation_whose_target_is_gone_fails_loudly(tmp_path):
    mutation = run_mutations.MUTATIONS[0]
    (tmp_path / mutation.file).parent.mkdir(parents=True)
    (tmp_path / mutation.file).write_text(
        "def atomic_write_bytes(path, data):\n    path.write_bytes(data)\n", encoding="utf-8"
    )
    with pytest.raises(run_mutations.MutationTargetMissing, match="occurs 0 times"):
        run_mutations.apply(mutation, tmp_path)


@pytest.mark.slow
def test_every_mutation_is_caught_and_the_unmutated_code_passes():
    result = subprocess.run(
        [sys.executable, "-m", "tests.mutations.run_mutations"], cwd=REPO, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("caught by every test that guards it") == len(run_mutations.MUTATIONS)
