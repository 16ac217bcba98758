"""The personas and questions of a run, read from the editable YAML files under data/."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from persona_assets.core.errors import InputError

# Persona names end up in file names, matrix labels and CSV columns.
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Persona:
    name: str
    prompt: str


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
            "personas": [{"name": p.name, "prompt": p.prompt} for p in self.personas],
            "questions": list(self.questions),
            "sources": dict(self.sources),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EvalSet":
        return cls(
            personas=[Persona(p["name"], p["prompt"]) for p in data["personas"]],
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


def load_personas(path: Path) -> list[Persona]:
    personas: list[Persona] = []
    seen: set[str] = set()
    for k, item in enumerate(_read_yaml(path, "personas")):
        if not isinstance(item, dict) or not item.get("name"):
            raise InputError(f"{path}: persona #{k + 1} has no name")
        name = str(item["name"])
        if not SAFE_NAME.match(name):
            raise InputError(f"{path}: persona name {name!r} must use letters, digits, '_', '-', '.' only")
        if name in seen:
            raise InputError(f"{path}: duplicate persona name {name!r}")
        prompt = item.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError(f"{path}: persona {name!r} has no prompt")
        seen.add(name)
        personas.append(Persona(name, prompt.strip()))
    return personas


def load_questions(path: Path) -> list[str]:
    questions: list[str] = []
    for k, item in enumerate(_read_yaml(path, "questions")):
        if not isinstance(item, str) or not item.strip():
            raise InputError(f"{path}: question #{k + 1} is empty or not a string")
        if item.strip() in questions:
            raise InputError(f"{path}: duplicate question {item.strip()!r}")
        questions.append(item.strip())
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
            raise InputError(f"personas setting: unknown persona(s) {unknown}; {personas_file} has {sorted(known)}")
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
