"""The personas and questions of a run, read from the editable YAML files under data/."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from persona_assets.runs.errors import InputError, quoted, type_name

# Persona names end up in file names, matrix labels, CSV columns and error messages: a name starts
# with a letter, digit or '_' (not '.', so no '..' or hidden file; not '-', so no command-line option),
# continues with those or '.', '-', and is short enough for any file system and message.
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
MAX_NAME_CHARS = 100
NAME_RULE = (
    f"a persona name starts with a letter, digit or '_', continues with letters, digits, '_', '-' or '.', "
    f"and has at most {MAX_NAME_CHARS} characters"
)
WHAT_NORMALISATION_DOES = "once leading and trailing whitespace is stripped (as the run does)"
# Paraphrases of a persona's prompt (the within-persona baseline): each is teacher-forced on every
# response of its persona, so the count is bounded; their length is bounded by the context window
# (prompt safety checks them like the prompts).
MAX_PARAPHRASES = 8


def normalised_text(text: str) -> str:
    """A prompt or question as the run uses it: two texts equal after this are the same input."""
    return text.strip()


@dataclass(frozen=True)
class Persona:
    name: str
    prompt: str
    paraphrases: tuple[str, ...] = ()  # the same persona in other words (normalised like the prompt)


@dataclass(frozen=True)
class EvalSet:
    personas: list[Persona]
    questions: list[str]
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def persona_names(self) -> list[str]:
        return [p.name for p in self.personas]

    def to_dict(self) -> dict[str, Any]:
        return {
            "personas": [
                {"name": p.name, "prompt": p.prompt, "paraphrases": list(p.paraphrases)} for p in self.personas
            ],
            "questions": list(self.questions),
            "sources": dict(self.sources),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EvalSet":
        return cls(
            personas=[Persona(p["name"], p["prompt"], tuple(p.get("paraphrases", ()))) for p in data["personas"]],
            questions=list(data["questions"]),
            sources=dict(data.get("sources", {})),
        )


def _read_yaml(path: Path, key: str) -> list[Any]:
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({exc})") from exc
    items = data.get(key) if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise InputError(f"{path}: expected a non-empty list under '{key}'")
    return items


def _name_problem(name: object) -> str | None:
    # A name that is not a string is described by its type only: quoting it could expand a YAML alias bomb.
    if not isinstance(name, str):
        return f"name must be a string, found {type_name(name)}"
    if len(name) > MAX_NAME_CHARS or not SAFE_NAME.match(name):
        return f"name {quoted(name, 120)} breaks the rule: {NAME_RULE}"
    return None


def load_personas(path: Path) -> list[Persona]:
    """Every persona of the file, its prompt normalised; names and prompts checked (types, the name
    rule, no repeated name, no two personas with the same prompt)."""
    personas: list[Persona] = []
    seen: set[str] = set()
    for k, item in enumerate(_read_yaml(path, "personas")):
        if not isinstance(item, dict) or item.get("name") is None or item.get("name") == "":
            raise InputError(f"{path}: persona #{k + 1} has no name")
        name = item["name"]
        if (problem := _name_problem(name)) is not None:
            raise InputError(f"{path}: persona #{k + 1}: {problem}")
        if name in seen:
            raise InputError(f"{path}: duplicate persona name {name!r}")
        prompt = item.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            raise InputError(f"{path}: persona {name!r}: prompt must be a string, found {type_name(prompt)}")
        if prompt is None or not normalised_text(prompt):
            raise InputError(f"{path}: persona {name!r} has no prompt")
        seen.add(name)
        prompt = normalised_text(prompt)
        personas.append(Persona(name, prompt, _paraphrases(path, name, item.get("paraphrases"))))
    _refuse_same_prompts(path, personas)
    _refuse_borrowed_paraphrases(path, personas)
    return personas


def _paraphrases(path: Path, name: str, items: object) -> tuple[str, ...]:
    """A persona's optional `paraphrases:` list, normalised; refused when not a list of at most
    MAX_PARAPHRASES non-empty strings, or when one repeats another of the same persona.

    A paraphrase equal to the persona's own prompt is kept: it measures the baseline of a prompt
    against itself, exactly 0 (a known answer); the run reports how many there are."""
    if items is None:
        return ()
    where = f"{path}: persona {name!r}: paraphrases"
    if not isinstance(items, list):
        raise InputError(f"{where} must be a list of strings, found {type_name(items)}")
    if len(items) > MAX_PARAPHRASES:
        raise InputError(f"{where}: {len(items)} given, at most {MAX_PARAPHRASES} are allowed")
    out: list[str] = []
    for k, item in enumerate(items):
        if not isinstance(item, str):
            raise InputError(f"{where}: #{k + 1} must be a string, found {type_name(item)}")
        text = normalised_text(item)
        if not text:
            raise InputError(f"{where}: #{k + 1} is empty")
        if text in out:
            raise InputError(
                f"{where}: #{out.index(text) + 1} and #{k + 1} are the same text {WHAT_NORMALISATION_DOES}; remove one"
            )
        out.append(text)
    return tuple(out)


def _refuse_borrowed_paraphrases(path: Path, personas: list[Persona]) -> None:
    # A paraphrase must keep its own persona: one that is another persona's prompt (or paraphrase)
    # would measure a between-persona difference and call it the within-persona baseline.
    prompt_of = {p.prompt: p.name for p in personas}
    paraphrase_of: dict[str, str] = {}
    for persona in personas:
        for k, text in enumerate(persona.paraphrases):
            if prompt_of.get(text, persona.name) != persona.name:
                what = f"the prompt of persona {prompt_of[text]!r}"
            elif paraphrase_of.setdefault(text, persona.name) != persona.name:
                what = f"also a paraphrase of persona {paraphrase_of[text]!r}"
            else:
                continue
            raise InputError(
                f"{path}: persona {persona.name!r}: paraphrase #{k + 1} is {what} {WHAT_NORMALISATION_DOES}; "
                "a paraphrase must say its own persona in other words"
            )


def _refuse_same_prompts(path: Path, personas: list[Persona]) -> None:
    # Two names for one prompt are one persona: its pair JS is exactly 0 and every statistic over
    # pairs would count it as a measured difference.
    first_with: dict[str, str] = {}
    same: list[str] = []
    for persona in personas:
        if (earlier := first_with.setdefault(persona.prompt, persona.name)) != persona.name:
            same.append(f"{earlier!r} and {persona.name!r}")
    if same:
        raise InputError(
            f"{path}: personas {'; '.join(same)} have the same prompt {WHAT_NORMALISATION_DOES}, so each pair "
            "would be one persona compared with itself; give them different prompts or remove one"
        )


def load_questions(path: Path) -> list[str]:
    """Every question of the file, normalised; refused when not a string, empty, or the same as an
    earlier one after normalisation (naming both positions)."""
    questions: list[str] = []
    position: dict[str, int] = {}
    for k, item in enumerate(_read_yaml(path, "questions")):
        if not isinstance(item, str):
            raise InputError(f"{path}: question #{k + 1} must be a string, found {type_name(item)}")
        question = normalised_text(item)
        if not question:
            raise InputError(f"{path}: question #{k + 1} is empty")
        if question in position:
            raise InputError(
                f"{path}: duplicate question {quoted(question, 120)}: #{position[question] + 1} and #{k + 1} are the "
                f"same question {WHAT_NORMALISATION_DOES}; remove one"
            )
        position[question] = k
        questions.append(question)
    return questions


def build_eval_set(
    personas_file: Path, questions_file: Path, *, persona_subset: list[str], n_questions: int
) -> EvalSet:
    """Read, validate and subset; at least two personas and one question must remain."""
    personas = load_personas(personas_file)
    questions = load_questions(questions_file)
    if persona_subset:
        known = {p.name: p for p in personas}
        unknown = [n for n in persona_subset if n not in known]
        if unknown:
            raise InputError(
                f"personas setting: unknown persona(s) {quoted(unknown)}; {personas_file} has {quoted(sorted(known))}"
            )
        if repeated := sorted({n for n in persona_subset if persona_subset.count(n) > 1}):
            raise InputError(
                f"personas setting: {quoted(repeated)} named more than once; a persona compared with itself "
                "is not a pair"
            )
        personas = [known[n] for n in persona_subset]
    if len(personas) < 2:
        raise InputError(f"{personas_file}: at least 2 personas are needed to compare, got {len(personas)}")
    if n_questions < 1:
        raise InputError(f"n_questions must be ≥ 1, got {n_questions}")
    if n_questions > len(questions):
        raise InputError(f"n_questions={n_questions} but {questions_file} has only {len(questions)}")
    return EvalSet(
        personas=personas,
        questions=questions[:n_questions],
        sources={"personas_file": str(personas_file), "questions_file": str(questions_file)},
    )
