"""Banks on disk: JSONL files of ``Question.to_dict()``, the format every stage reads."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mede2_plugin.data.common import BankError, LoadResult
from mede2_plugin.data.jsonl_rows import iter_json_lines
from mede2_plugin.jsonl import write_jsonl
from mede2_plugin.questions import Question


def write_bank(path: str | Path, questions: Iterable[Question]) -> int:
    """Write questions as JSONL (atomically); duplicate ids are an error. Returns the count."""
    seen: set[str] = set()

    def rows():
        for question in questions:
            if question.id in seen:
                raise BankError(f"{path}: duplicate question id {question.id!r}")
            seen.add(question.id)
            yield question.to_dict()

    return write_jsonl(path, rows())


def load_question_bank(path: Path) -> LoadResult:
    """Read a bank written by :func:`write_bank`; bad rows are rejected with their line."""
    result = LoadResult()
    seen: set[str] = set()
    for _, line, row in iter_json_lines(path, result):
        try:
            question = Question.from_dict(row)
            if not isinstance(question.options, dict) or not question.options:
                raise ValueError("options must be a non-empty mapping")
            if question.answer is not None and question.answer not in question.options:
                raise ValueError(f"answer {question.answer!r} is not one of the options")
            if question.id in seen:
                raise ValueError(f"duplicate id {question.id!r}")
        except (TypeError, ValueError) as err:
            result.reject(path, f"line {line}", err, row.get("id"))
            continue
        seen.add(question.id)
        result.questions.append(question)
    return result


def read_bank(path: str | Path) -> list[Question]:
    """The questions of a bank file; any bad line raises :class:`BankError` naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise BankError(f"{path}: no such bank file")
    result = load_question_bank(path)
    if result.rejected:
        raise BankError("; ".join(str(r) for r in result.rejected[:5]))
    return result.questions
