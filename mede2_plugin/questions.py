"""The one question record every stage reads and writes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
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
