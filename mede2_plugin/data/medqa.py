"""MedQA (USMLE) JSONL: ``{question, answer, options{A..E}, meta_info, answer_idx}`` per line.

Both the 5-option files (``US/test.jsonl`` ...) and the 4-option ones
(``4_options/phrases_no_exclude_*.jsonl``, with ``metamap_phrases``) read the same way; the
bigbio variant with options as ``[{key, value}]`` is accepted too. Each row is checked:
``options[answer_idx] == answer``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mede2_plugin.core.questions import Question
from mede2_plugin.data.common import (
    LoadResult,
    RowError,
    check_answer,
    check_options,
    clean_text,
)
from mede2_plugin.data.jsonl_rows import iter_json_lines


def medqa_options(raw: Any) -> dict[str, str]:
    if isinstance(raw, list) and all(isinstance(o, dict) and {"key", "value"} <= set(o) for o in raw):
        raw = {o["key"]: o["value"] for o in raw}
    return check_options(raw)


def load_medqa(path: Path, source: str = "medqa", id_prefix: str | None = None,
               keep_metamap_phrases: bool = False) -> LoadResult:
    """Load a MedQA JSONL file.

    Args:
        source: the ``source`` of every question.
        id_prefix: ids are ``{id_prefix}-{n}`` with ``n`` the 0-based row number (blank lines not
            counted); default ``{source}-{file stem}`` so train/dev/test ids never collide.
        keep_metamap_phrases: keep the 4-option files' ``metamap_phrases`` in metadata.
    """
    prefix = id_prefix or f"{source}-{path.stem}"
    result = LoadResult()
    for index, line, row in iter_json_lines(path, result):
        try:
            options = medqa_options(row.get("options"))
            answer = check_answer(row.get("answer_idx"), options, row.get("answer"))
            question = clean_text(row.get("question"), "question")
        except RowError as err:
            result.reject(path, f"line {line}", err)
            continue
        metadata = {k: v for k, v in row.items()
                    if k not in {"question", "answer", "options", "answer_idx", "metamap_phrases"}}
        if keep_metamap_phrases and "metamap_phrases" in row:
            metadata["metamap_phrases"] = row["metamap_phrases"]
        metadata.update(source_file=path.name, source_line=line)
        result.questions.append(Question(id=f"{prefix}-{index}", source=source, question=question,
                                         options=options, answer=answer, metadata=metadata))
    return result
