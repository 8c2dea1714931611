"""The one question record every stage reads and writes, and its one file format.

A question file is JSONL of :meth:`Question.to_dict` lines; :func:`read_questions` and
:func:`write_questions` are its only reader and writer (the ``bank`` format of
:mod:`mede2_plugin.data` reads it leniently, record by record, with :func:`question_from_record`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Question:
    """A multiple-choice medical question, text-only or with images.

    Attributes:
        id: stable identifier, unique within a bank (``source`` plus the original id).
        source: where it came from, e.g. ``medqa``, ``medxpertqa_mm``, ``mmmu``.
        question: the question stem, without the option list.
        options: option letter to option text, in order (``{"A": "...", "B": "..."}``).
        answer: the correct option letter, or None when the bank hides it.
        images: image file paths (absolute, or relative to the bank's media folder).
        patient_info: patient vignette when the bank keeps it apart from the stem.
        modality: imaging modality when known (CT, MRI, X-ray, ...).
        question_type: e.g. ``Reasoning`` / ``Understanding`` for MedXpertQA.
        metadata: anything else the bank carries (medical_task, body_system, subject, ...).
    """

    id: str
    source: str
    question: str
    options: dict[str, str]
    answer: str | None = None
    images: list[str] = field(default_factory=list)
    patient_info: str = ""
    modality: str | None = None
    question_type: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Question":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown question fields: {sorted(unknown)}")
        missing = {"id", "source", "question", "options"} - set(data)
        if missing:
            raise ValueError(f"missing question fields: {sorted(missing)}")
        return cls(**data)

    @property
    def answer_text(self) -> str | None:
        return self.options.get(self.answer) if self.answer else None


# -- question files: JSONL of Question.to_dict(), the format every stage reads and writes ---------

class QuestionFileError(ValueError):
    """A question file that cannot be read as it is; the message names the file and the line."""


def question_from_record(record: dict[str, Any]) -> Question:
    """A :class:`Question` from one line of a question file, checked (options, answer)."""
    question = Question.from_dict(record)
    if not isinstance(question.options, dict) or not question.options:
        raise ValueError("options must be a non-empty mapping")
    if question.answer is not None and question.answer not in question.options:
        raise ValueError(f"answer {question.answer!r} is not one of the options")
    if not isinstance(question.images, list) or not all(isinstance(i, str) and i for i in question.images):
        raise ValueError(f"images must be a list of paths, got {question.images!r:.80}")
    return question


def read_questions(path: str | Path) -> list[Question]:
    """Every question of a question file; the first bad or duplicate record raises
    :class:`QuestionFileError` naming the file, the line and the record's id."""
    from mede2_plugin.core.jsonl import JsonlError, read_jsonl

    path = Path(path)
    if not path.is_file():
        raise QuestionFileError(f"{path}: no such question file")
    questions: list[Question] = []
    seen: set[str] = set()
    try:
        for line, record in read_jsonl(path, with_lines=True):
            try:
                question = question_from_record(record)
                if question.id in seen:
                    raise ValueError(f"duplicate question id {question.id!r}")
            except (TypeError, ValueError) as err:
                raise QuestionFileError(f"{path}:line {line} ({record.get('id', '<no id>')!r}): {err}") from None
            seen.add(question.id)
            questions.append(question)
    except JsonlError as err:
        raise QuestionFileError(str(err)) from None
    return questions


def write_questions(path: str | Path, questions: Iterable[Question]) -> int:
    """Replace ``path`` with ``questions`` (atomically); a duplicate id is an error. Returns the count."""
    from mede2_plugin.core.jsonl import write_jsonl

    seen: set[str] = set()

    def rows() -> Iterator[dict[str, Any]]:
        for question in questions:
            if question.id in seen:
                raise QuestionFileError(f"{path}: duplicate question id {question.id!r}")
            seen.add(question.id)
            yield question.to_dict()

    return write_jsonl(path, rows())
