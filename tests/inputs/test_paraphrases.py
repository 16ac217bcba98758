"""`paraphrases:` in the personas file: read and normalised like prompts, bounded, and refused with a one-line
message when one is not a string, empty, repeated, or another persona's prompt or paraphrase."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from persona_assets.inputs.eval_set import MAX_PARAPHRASES, build_eval_set, load_personas
from persona_assets.runs.errors import InputError
from tests.conftest import REPO


def _personas(tmp_path: Path, personas: list) -> Path:
    path = tmp_path / "personas.yaml"
    path.write_text(yaml.safe_dump({"personas": personas}))
    return path


def _refused(tmp_path: Path, personas: list, expected: str) -> str:
    path = _personas(tmp_path, personas)
    with pytest.raises(InputError) as raised:
        load_personas(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and expected in message, message
    assert "\n" not in message
    return message


def test_paraphrases_are_read_normalised_and_optional(tmp_path):
    personas = load_personas(
        _personas(
            tmp_path,
            [
                {"name": "a", "prompt": "You are A.", "paraphrases": ["  You play A.\n", "A is who you are."]},
                {"name": "b", "prompt": "You are B."},
                {"name": "c", "prompt": "You are C.", "paraphrases": []},
            ],
        )
    )
    assert [p.paraphrases for p in personas] == [("You play A.", "A is who you are."), (), ()]


def test_a_paraphrase_equal_to_its_own_prompt_is_kept(tmp_path):
    """It measures the prompt against itself (a within-persona JS of exactly 0): allowed, and reported by the run."""
    personas = load_personas(
        _personas(tmp_path, [{"name": "a", "prompt": "A", "paraphrases": [" A "]}, {"name": "b", "prompt": "B"}])
    )
    assert personas[0].paraphrases == ("A",)


def test_a_paraphrase_that_is_another_personas_prompt_is_refused_naming_both(tmp_path):
    message = _refused(
        tmp_path,
        [
            {"name": "pirate", "prompt": "You are a pirate."},
            {
                "name": "judge",
                "prompt": "You are a judge.",
                "paraphrases": ["You sit as a judge.", " You are a pirate."],
            },
        ],
        "persona 'judge': paraphrase #2 is the prompt of persona 'pirate' once leading and trailing whitespace is "
        "stripped",
    )
    assert "a paraphrase must say its own persona in other words" in message


def test_a_paraphrase_shared_by_two_personas_is_refused(tmp_path):
    _refused(
        tmp_path,
        [
            {"name": "a", "prompt": "A", "paraphrases": ["Someone."]},
            {"name": "b", "prompt": "B", "paraphrases": ["Someone."]},
        ],
        "persona 'b': paraphrase #1 is also a paraphrase of persona 'a'",
    )


@pytest.mark.parametrize(
    ("paraphrases", "expected"),
    [
        ("You play A.", "persona 'a': paraphrases must be a list of strings, found str"),
        ({"text": "x"}, "persona 'a': paraphrases must be a list of strings, found dict"),
        (["ok", 7], "persona 'a': paraphrases: #2 must be a string, found int"),
        (["ok", ["nested"]], "persona 'a': paraphrases: #2 must be a string, found list"),
        (["ok", "  \n"], "persona 'a': paraphrases: #2 is empty"),
        (["One.", "Two.", " One."], "persona 'a': paraphrases: #1 and #3 are the same text"),
        ([f"P{k}" for k in range(MAX_PARAPHRASES + 1)], f"{MAX_PARAPHRASES + 1} given, at most {MAX_PARAPHRASES}"),
    ],
)
def test_bad_paraphrases_are_refused_in_one_line(tmp_path, paraphrases, expected):
    _refused(
        tmp_path, [{"name": "a", "prompt": "A", "paraphrases": paraphrases}, {"name": "b", "prompt": "B"}], expected
    )


def test_a_long_list_is_refused_before_its_items_are_read(tmp_path):
    """The count bound comes first: a huge list costs one len(), and its items are never quoted."""
    message = _refused(
        tmp_path,
        [{"name": "a", "prompt": "A", "paraphrases": [["x" * 50]] * 5000}, {"name": "b", "prompt": "B"}],
        "5000 given",
    )
    assert len(message) < 300


def test_the_subset_keeps_each_personas_paraphrases(tmp_path):
    path = _personas(
        tmp_path,
        [{"name": n, "prompt": n.upper(), "paraphrases": [f"{n} again"]} for n in "abc"],
    )
    questions = tmp_path / "q.yaml"
    questions.write_text(yaml.safe_dump({"questions": ["Q?"]}))
    evals = build_eval_set(path, questions, persona_subset=["c", "a"], n_questions=1)
    assert [(p.name, p.paraphrases) for p in evals.personas] == [("c", ("c again",)), ("a", ("a again",))]


def test_the_shipped_personas_have_two_paraphrases_each_of_their_own():
    personas = load_personas(REPO / "data" / "personas.yaml")
    assert len(personas) == 12 and all(len(p.paraphrases) == 2 for p in personas)
    assert all(p.prompt not in p.paraphrases for p in personas)  # every one in other words
    words = lambda text: set(re.findall(r"[a-z]+", text.lower()))  # noqa: E731
    for persona in personas:  # other words, same persona: each shares some of its prompt's words
        assert all(
            words(text) & words(persona.prompt) - {"you", "are", "a", "an", "the"} for text in persona.paraphrases
        )
