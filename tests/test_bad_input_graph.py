"""Inputs that would make a run publish something other than what it says, through the graph on the
tiny model: two personas (or questions) that are one after the run's normalisation, a YAML alias bomb
as a persona name, and a failure Dagster cannot record. Each fails the first step, before the model,
in one bounded message, and the run's record (run.json) ends `failed`."""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from persona_assets.assets.eval_set import eval_set
from persona_assets.assets.leakage import leakage_rates
from persona_assets.environment import storage_resources
from tests.run_results import started_steps
from tests.test_graph import materialize, run_config
from persona_assets.ui_metadata import NOTHING_EVALUATED
from resources.llm import CpuLLM

MODEL_STEPS = {"generations", "persona_cosine", "divergence_matrices", "persona_baseline"}


def _personas_file(tmp_path: Path, personas: list[dict]) -> str:
    path = tmp_path / "personas.yaml"
    path.write_text(yaml.safe_dump({"personas": personas}))
    return str(path)


def _failure(result) -> str:
    [failure] = result.get_step_failure_events()
    assert failure.step_key == "eval_set"
    return failure.step_failure_data.error.message


def _run_record(tmp_path: Path, result) -> dict:
    return json.loads((tmp_path / "data" / "runs" / result.run_id / "run.json").read_text())


def _failed_before_the_model(tmp_path: Path, result) -> str:
    assert not result.success
    assert not started_steps(result) & MODEL_STEPS
    record = _run_record(tmp_path, result)
    assert record["status"] == "failed" and "eval_set" in record["failed_steps"]
    # The refusal is one line; the run adds a second saying that nothing was evaluated (the UI's reader).
    message = _failure(result).rstrip()
    assert message.endswith("\n" + NOTHING_EVALUATED)
    return message[: -len(NOTHING_EVALUATED)].rstrip("\n")


def test_two_personas_differing_only_by_trailing_whitespace_are_refused_naming_both(tiny_model_dir, tmp_path):
    personas = _personas_file(
        tmp_path,
        [
            {"name": "pirate", "prompt": "You are a pirate."},
            {"name": "pirate_again", "prompt": "You are a pirate.  \n"},
            {"name": "librarian", "prompt": "You are a librarian."},
        ],
    )
    config = run_config(tmp_path, eval_set={"config": {"personas_file": personas, "n_questions": 1}})
    message = _failed_before_the_model(tmp_path, materialize(tiny_model_dir, config))
    assert "personas 'pirate' and 'pirate_again' have the same prompt once leading and trailing whitespace" in message
    assert "librarian" not in message and len(message.splitlines()) == 1


def test_two_questions_differing_only_by_whitespace_are_refused_naming_both_positions(tiny_model_dir, tmp_path):
    questions = tmp_path / "questions.yaml"
    questions.write_text(yaml.safe_dump({"questions": ["What is tea?", "Why?", "  What is tea?\t"]}))
    config = run_config(tmp_path, eval_set={"config": {"questions_file": str(questions), "n_questions": 2}})
    message = _failed_before_the_model(tmp_path, materialize(tiny_model_dir, config))
    assert "duplicate question 'What is tea?': #1 and #3 are the same question once leading and trailing" in message
    assert len(message.splitlines()) == 1


def test_a_persona_chosen_twice_in_the_subset_is_refused(tiny_model_dir, tmp_path):
    twice = ["villain", "comedian", "villain"]
    config = run_config(tmp_path, eval_set={"config": {"personas": twice, "n_questions": 1}})
    message = _failed_before_the_model(tmp_path, materialize(tiny_model_dir, config))
    assert "personas setting: ['villain'] named more than once" in message


def alias_bomb_personas(path: Path) -> Path:
    """A persona whose name is 9 nested levels of 9-item lists: 9⁹ ≈ 3.9 × 10⁸ leaves, a few hundred
    bytes of YAML (the loader shares references, so loading it is cheap; expanding it is not)."""
    levels = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    levels += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(8)]
    path.write_text(
        "bomb:\n"
        + "".join(f"  {line}\n" for line in levels)
        + "personas:\n  - {name: *i, prompt: You are a pirate.}\n  - {name: librarian, prompt: You are a librarian.}\n"
    )
    return path


def test_an_alias_bomb_as_a_persona_name_is_refused_at_once_without_expanding_it(tiny_model_dir, tmp_path):
    bomb = alias_bomb_personas(tmp_path / "personas.yaml")
    leaves = yaml.safe_load(bomb.read_text())["personas"][0]["name"]
    for _ in range(8):
        leaves = leaves[0]
    assert len(leaves) == 9  # the name really is the 9-level bomb
    config = run_config(tmp_path, eval_set={"config": {"personas_file": str(bomb), "n_questions": 1}})
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    started = time.perf_counter()
    result = materialize(tiny_model_dir, config)
    elapsed = time.perf_counter() - started
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    message = _failed_before_the_model(tmp_path, result)
    assert message.rstrip().endswith("personas.yaml: persona #1: name must be a string, found list")
    assert len(message) < 400
    # Expanding it took 8.5 GB and minutes; refusing it is the cost of a failed first step.
    assert elapsed < 60 and grown_mib < 200, (elapsed, grown_mib)


def test_a_failure_dagster_cannot_record_still_ends_the_run_record_failed(tiny_model_dir, tmp_path, monkeypatch):
    """Dagster's own MemoryError while it serialises a step's error (what an unbounded message did):
    no step-failure event is written, and the run's record must still end `failed`, not `running`."""
    import dagster._core.execution.plan.execute_plan as execute_plan

    def cannot_serialise(*args, **kwargs):
        raise MemoryError("while serialising the step's error")

    monkeypatch.setattr(execute_plan, "step_failure_event_from_exc_info", cannot_serialise)
    personas = _personas_file(tmp_path, [{"name": "a", "prompt": "Same."}, {"name": "b", "prompt": "Same."}])
    config = run_config(tmp_path, eval_set={"config": {"personas_file": personas, "n_questions": 1}})
    result = materialize(tiny_model_dir, config)
    assert not result.success and not result.get_step_failure_events()  # Dagster recorded no step failure
    record = _run_record(tmp_path, result)
    assert record["status"] == "failed"
    assert "eval_set" in record["failed_steps"] and "generations" in record["failed_steps"]
    assert not (tmp_path / "data" / "outputs").exists()  # nothing published


def test_a_utf16_leakage_table_is_read_by_the_first_steps(tmp_path):
    rows = [("villain", "comedian", 0.2), ("comedian", "villain", 0.1)]
    path = tmp_path / "leakage.csv"
    path.write_text("source,target,rate\n" + "".join(f"{s},{t},{r}\n" for s, t, r in rows), encoding="utf-16")
    assert path.read_bytes()[:2] in (b"\xff\xfe", b"\xfe\xff")  # with its byte-order mark, as Windows tools save it
    config = run_config(tmp_path, leakage_rates={"config": {"leakage_path": str(path)}})
    config = dg.RunConfig(ops={k: v for k, v in config.ops.items() if k in ("eval_set", "leakage_rates")})
    result = dg.materialize(
        [eval_set, leakage_rates],
        resources={**storage_resources(), "llm": CpuLLM()},  # eval_set checks the model's files (no weights)
        run_config=config,
        raise_on_error=False,
    )
    assert result.success
    assert [(r["source"], r["target"], r["rate"]) for r in result.output_for_node("leakage_rates")["rows"]] == rows


@pytest.mark.parametrize(
    ("failing", "unrecordable", "status"),
    [
        (None, False, "complete"),
        ("downstream", False, "failed"),
        ("downstream", True, "failed"),
    ],
)
def test_the_run_record_ends_with_the_run_under_the_multiprocess_executor(
    tmp_path, monkeypatch, failing, unrecordable, status
):
    """Every step in a process of its own: a step process whose failure Dagster could not record is
    the last to tear down, and the record must still end `failed` (it stayed `running` before)."""
    from tests.run_record_job import record_job

    if failing:
        monkeypatch.setenv("PERSONA_TEST_FAILING_STEP", failing)
    if unrecordable:
        monkeypatch.setenv("PERSONA_TEST_UNRECORDABLE", "1")
    with dg.instance_for_test() as instance:
        result = dg.execute_job(dg.reconstructable(record_job), instance=instance)
    assert result.success == (status == "complete")
    record = _run_record(tmp_path, result)
    assert record["status"] == status
    assert record["failed_steps"] == (["downstream"] if failing else [])
