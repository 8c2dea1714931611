"""Medbullets op4 / op5: the CSV files, their pandas column-oriented ``.json`` twins, and the
harness JSONL copies (``{question, options, answer, answer_idx}``).

CSV header: ``link,question,opa,opb,opc,opd[,ope],answer_idx,answer,explanation``, CRLF line
endings and quoted fields with embedded newlines (read by :mod:`mede2_plugin.data.csv_rows`,
which also catches unbalanced quotes). About 116 of the 308 questions mention a "Figure A" that
the public release does not ship: those load as text-only questions with
``metadata["figure_not_shipped"]`` True (False on the others) so a report can count, split or
exclude them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mede2_plugin.core.questions import Question
from mede2_plugin.data.common import (
    BankError,
    LoadResult,
    RowError,
    check_answer,
    check_options,
    clean_text,
    mentions_figure,
    read_text,
)
from mede2_plugin.data.csv_rows import iter_csv_rows
from mede2_plugin.data.jsonl_rows import iter_json_lines

OPTION_COLUMNS = ("opa", "opb", "opc", "opd", "ope")


def _json_rows(path: Path) -> Iterator[tuple[int, str, dict[str, Any]]]:
    try:
        columns = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise BankError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(columns, dict) or not all(isinstance(c, dict) for c in columns.values()):
        raise BankError(f"{path}: expected a pandas column-oriented JSON object {{column: {{row: value}}}}")
    keys = sorted({k for c in columns.values() for k in c}, key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else k))
    for index, key in enumerate(keys):
        yield index, f"row {key}", {name: col.get(key) for name, col in columns.items()}


def _jsonl_rows(path: Path, result: LoadResult) -> Iterator[tuple[int, str, dict[str, Any]]]:
    for index, line, row in iter_json_lines(path, result):
        yield index, f"line {line}", row


def _options(row: dict[str, Any]) -> dict[str, str]:
    if "options" in row:
        return check_options(row["options"])
    present = [c for c in OPTION_COLUMNS if c in row]
    if not present:
        raise RowError("no option columns (opa, opb, ...)")
    texts = [row[c] for c in present]
    # op4 rows read through an op5-shaped table (or a trailing empty column) end in blanks.
    while texts and (texts[-1] is None or not str(texts[-1]).strip()):
        texts.pop()
    return check_options({"ABCDE"[i]: t for i, t in enumerate(texts)})


def load_medbullets(path: Path, source: str | None = None, id_prefix: str | None = None) -> LoadResult:
    """Load a Medbullets ``.csv``, column-oriented ``.json`` or harness ``.jsonl`` file.

    Args:
        source: default ``medbullets_op4`` or ``medbullets_op5`` from the file's option count.
        id_prefix: ids are ``{id_prefix}-{n}``, ``n`` the 0-based row; default the source, so the
            CSV and its JSON twin give the same ids.
    """
    result = LoadResult()
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows = iter_csv_rows(path, result, required="question")
    elif suffix == ".json":
        rows = _json_rows(path)
    elif suffix == ".jsonl":
        rows = _jsonl_rows(path, result)
    else:
        raise BankError(f"{path}: Medbullets files are .csv, .json or .jsonl, not {suffix!r}")
    parsed: list[tuple[int, dict[str, Any], dict[str, str], str, str]] = []
    for index, record, row in rows:
        try:
            options = _options(row)
            answer = check_answer(row.get("answer_idx"), options, row.get("answer"))
            question = clean_text(row.get("question"), "question")
        except RowError as err:
            result.reject(path, record, err)
            continue
        parsed.append((index, row, options, answer, question))
    counts = {len(p[2]) for p in parsed}
    default_source = f"medbullets_op{max(counts)}" if counts else "medbullets"
    source = source or default_source
    prefix = id_prefix or source
    for index, row, options, answer, question in parsed:
        metadata: dict[str, Any] = {"source_file": path.name}
        for key in ("link", "explanation"):
            if row.get(key):
                metadata[key] = str(row[key])
        metadata["figure_not_shipped"] = mentions_figure(question)
        result.questions.append(Question(id=f"{prefix}-{index}", source=source, question=question,
                                         options=options, answer=answer, metadata=metadata))
    return result
