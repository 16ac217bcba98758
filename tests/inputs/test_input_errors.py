"""Personas and questions that are one input after normalisation, names and prompts of the wrong type,
the persona-name rule, and error messages that never quote unbounded input (errors.quoted)."""

from __future__ import annotations

import re
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from persona_assets.runs.errors import MAX_QUOTED_CHARS, InputError, quoted
from persona_assets.inputs.eval_set import MAX_NAME_CHARS, build_eval_set, load_personas, load_questions
from persona_assets.run_config_validation import run_config_problems
from tests.test_bad_input_graph import alias_bomb_personas


def _personas(tmp_path: Path, personas: list) -> Path:
    path = tmp_path / "personas.yaml"
    path.write_text(yaml.safe_dump({"personas": personas}))
    return path


def _questions(tmp_path: Path, questions: list) -> Path:
    path = tmp_path / "questions.yaml"
    path.write_text(yaml.safe_dump({"questions": questions}))
    return path


# ------------------------------------------------------------------ the same input twice
@pytest.mark.parametrize("second", ["You are a pirate. ", "\tYou are a pirate.\n", "You are a pirate."])
def test_personas_with_one_prompt_after_stripping_are_refused_naming_both(tmp_path, second):
    path = _personas(
        tmp_path,
        [{"name": "a", "prompt": "You are a pirate."}, {"name": "c", "prompt": "C"}, {"name": "b", "prompt": second}],
    )
    with pytest.raises(InputError) as raised:
        load_personas(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: personas 'a' and 'b' have the same prompt once leading and trailing whitespace")
    assert "'c'" not in message and "\n" not in message


def test_every_pair_of_same_personas_is_named_in_one_line(tmp_path):
    pairs = [("a", "X"), ("b", "Y"), ("c", "X "), ("d", " Y")]
    path = _personas(tmp_path, [{"name": n, "prompt": p} for n, p in pairs])
    with pytest.raises(InputError, match=r"personas 'a' and 'c'; 'b' and 'd' have the same prompt") as raised:
        load_personas(path)
    assert "\n" not in str(raised.value)


def test_prompts_differing_inside_are_different_personas(tmp_path):
    path = _personas(
        tmp_path, [{"name": "a", "prompt": "You are a pirate."}, {"name": "b", "prompt": "You are a  pirate."}]
    )
    assert [p.prompt for p in load_personas(path)] == ["You are a pirate.", "You are a  pirate."]


def test_questions_equal_after_stripping_are_refused_naming_both_positions(tmp_path):
    path = _questions(tmp_path, ["Why?", "What is tea?", "How?", " What is tea? "])
    expected = "duplicate question 'What is tea?': #2 and #4 are the same question"
    with pytest.raises(InputError, match=re.escape(expected)):
        load_questions(path)


def test_a_persona_named_twice_in_the_subset_is_refused(tmp_path):
    personas = _personas(tmp_path, [{"name": n, "prompt": n.upper()} for n in "abc"])
    questions = _questions(tmp_path, ["Q?"])
    with pytest.raises(InputError, match=re.escape("personas setting: ['a'] named more than once")):
        build_eval_set(personas, questions, persona_subset=["a", "b", "a"], n_questions=1)


# ------------------------------------------------------------------ types and the name rule
@pytest.mark.parametrize(
    ("name", "found"), [(7, "int"), (True, "bool"), (["x"], "list"), ({"x": 1}, "dict"), (1.5, "float")]
)
def test_a_name_that_is_not_a_string_is_refused_with_its_type(tmp_path, name, found):
    path = _personas(tmp_path, [{"name": name, "prompt": "A"}, {"name": "b", "prompt": "B"}])
    with pytest.raises(InputError, match=re.escape(f"persona #1: name must be a string, found {found}")):
        load_personas(path)


@pytest.mark.parametrize(("prompt", "found"), [(7, "int"), (["You are"], "list"), ({"text": "x"}, "dict")])
def test_a_prompt_that_is_not_a_string_is_refused_with_its_type(tmp_path, prompt, found):
    path = _personas(tmp_path, [{"name": "a", "prompt": prompt}, {"name": "b", "prompt": "B"}])
    with pytest.raises(InputError, match=re.escape(f"persona 'a': prompt must be a string, found {found}")):
        load_personas(path)


@pytest.mark.parametrize(("question", "found"), [(3, "int"), (["Why?"], "list"), (None, "NoneType")])
def test_a_question_that_is_not_a_string_is_refused_with_its_type(tmp_path, question, found):
    with pytest.raises(InputError, match=re.escape(f"question #2 must be a string, found {found}")):
        load_questions(_questions(tmp_path, ["Why?", question]))


@pytest.mark.parametrize("name", ["..", ".hidden", "-rf", "a/b", "a b", "é", "x" * (MAX_NAME_CHARS + 1)])
def test_the_name_rule_message_states_the_rule_the_name_breaks(tmp_path, name):
    path = _personas(tmp_path, [{"name": name, "prompt": "A"}, {"name": "b", "prompt": "B"}])
    with pytest.raises(InputError) as raised:
        load_personas(path)
    message = str(raised.value)
    rule = "a persona name starts with a letter, digit or '_', continues with letters, digits, '_', '-' or '.', "
    assert rule in message
    assert f"at most {MAX_NAME_CHARS} characters" in message
    assert len(message) < len(str(path)) + 400


@pytest.mark.parametrize("name", ["_x", "a.b", "a-b", "A1", "9", "x" * MAX_NAME_CHARS])
def test_names_within_the_rule_are_accepted(tmp_path, name):
    personas = load_personas(_personas(tmp_path, [{"name": name, "prompt": "A"}, {"name": "b", "prompt": "B"}]))
    assert personas[0].name == name


def test_an_alias_bomb_name_is_refused_in_bounded_time_and_memory(tmp_path):
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(InputError, match="persona #1: name must be a string, found list$"):
        load_personas(alias_bomb_personas(tmp_path / "p.yaml"))
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 5 and peak < 20e6, (elapsed, peak)


# ------------------------------------------------------------------ bounded quoting
@settings(max_examples=200, deadline=None)
@given(st.text(max_size=2000), st.integers(min_value=20, max_value=600))
def test_quoted_text_is_bounded_and_exact_when_short(text, limit):
    shown = quoted(text, limit)
    if len(text) <= limit:
        assert shown == repr(text)
    else:
        assert shown.startswith(repr(text[:limit])) and shown.endswith(f"… ({len(text)} characters in all)")
        assert len(shown) <= len(repr(text[:limit])) + 40


def test_quoting_a_bomb_is_bounded_and_says_what_it_cut():
    bomb = ["x"] * 9
    for _ in range(8):
        bomb = [bomb] * 9
    started = time.perf_counter()
    shown = quoted(bomb)
    assert time.perf_counter() - started < 1
    assert len(shown) <= MAX_QUOTED_CHARS + 40 and shown.endswith("… (list of 9 items)")
    assert quoted([1, "a"]) == "[1, 'a']" and quoted(None) == "None"


def test_a_huge_setting_is_quoted_cut_in_the_run_config_message():
    from persona_assets.definitions import defs

    job = defs.resolve_implicit_global_asset_job_def()
    problems = run_config_problems({"ops": {"eval_set": {"config": {"n_questions": "9" * 100_000}}}}, job)
    [problem] = [p for p in problems if p.startswith("ops.eval_set.config.n_questions")]
    assert "(100000 characters in all)" in problem and len(problem) < 1000
