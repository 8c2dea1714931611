"""The ``bank`` format: our own question files (:mod:`mede2_plugin.core.questions`), read leniently."""

from __future__ import annotations

from pathlib import Path

from mede2_plugin.core.questions import question_from_record
from mede2_plugin.data.common import LoadResult
from mede2_plugin.data.jsonl_rows import iter_json_lines


def load_question_bank(path: Path) -> LoadResult:
    """Read a question file record by record; bad rows are rejected with their line."""
    result = LoadResult()
    seen: set[str] = set()
    for _, line, row in iter_json_lines(path, result):
        try:
            question = question_from_record(row)
            if question.id in seen:
                raise ValueError(f"duplicate id {question.id!r}")
        except (TypeError, ValueError) as err:
            result.reject(path, f"line {line}", err, row.get("id"))
            continue
        seen.add(question.id)
        result.questions.append(question)
    return result
