"""Any JSONL or CSV bank, described by a column mapping.

Example (MedMCQA: ``id, question, opa..opd, cop`` with ``cop`` 0-based)::

    load_bank("dev.jsonl", "generic", source="medmcqa",
              mapping={"id": "id", "question": "question", "answer_index": "cop"},
              option_columns=["opa", "opb", "opc", "opd"])
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
    normalise,
    options_from_list,
)
from mede2_plugin.data.csv_rows import iter_csv_rows
from mede2_plugin.data.jsonl_rows import iter_json_lines

FIELDS = {"id", "question", "options", "answer", "answer_text", "answer_index", "images",
          "patient_info", "modality", "question_type"}


def _rows(path: Path, result: LoadResult) -> Iterator[tuple[int, str, dict[str, Any]]]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        for index, line, row in iter_json_lines(path, result):
            yield index, f"line {line}", row
    elif suffix in {".csv", ".tsv"}:
        yield from iter_csv_rows(path, result, delimiter="\t" if suffix == ".tsv" else ",")
    else:
        raise BankError(f"{path}: the generic loader reads .jsonl, .csv or .tsv, not {suffix!r}")


def _decode(value: Any) -> Any:
    """CSV cells holding JSON (``{"A": ...}``, ``["x", "y"]``) become objects."""
    if isinstance(value, str) and value.strip()[:1] in {"{", "["}:
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _options(row: dict[str, Any], mapping: dict[str, str], option_columns: list[str] | None) -> dict[str, str]:
    if option_columns:
        texts = [row.get(c) for c in option_columns]
        while texts and (texts[-1] is None or not str(texts[-1]).strip()):
            texts.pop()
        return check_options(options_from_list(texts))
    raw = _decode(row.get(mapping.get("options", "options")))
    if isinstance(raw, list):
        raw = options_from_list(raw)
    return check_options(raw)


def _answer(row: dict[str, Any], mapping: dict[str, str], options: dict[str, str], index_base: int) -> str:
    if "answer_index" in mapping:
        raw = row.get(mapping["answer_index"])
        try:
            position = int(raw) - index_base
        except (TypeError, ValueError):
            raise RowError(f"answer index {raw!r} is not an integer") from None
        if not 0 <= position < len(options):
            raise RowError(f"answer index {raw!r} is outside the {len(options)} options")
        return list(options)[position]
    answer_text = row.get(mapping["answer_text"]) if "answer_text" in mapping else None
    if "answer" in mapping or "answer_text" not in mapping:
        return check_answer(_decode(row.get(mapping.get("answer", "answer"))), options, answer_text)
    matches = [k for k, v in options.items() if normalise(v) == normalise(str(answer_text or ""))]
    if len(matches) != 1:
        raise RowError(f"answer text {str(answer_text)[:80]!r} matches {len(matches)} options")
    return matches[0]


def load_generic(path: Path, mapping: dict[str, str] | None = None, source: str | None = None,
                 option_columns: list[str] | None = None, answer_index_base: int = 0,
                 id_prefix: str | None = None, images_dir: str | Path | None = None) -> LoadResult:
    """Load a JSONL/CSV/TSV bank with ``mapping`` from our field names to the file's columns.

    Args:
        mapping: keys among ``id, question, options, answer, answer_text, answer_index, images,
            patient_info, modality, question_type``; a missing key means the column of the same
            name. ``options`` is a column holding ``{letter: text}`` or a list (JSON in CSV cells);
            ``answer`` a letter, ``answer_text`` the option text (checked against ``answer``, or
            used alone to find the letter), ``answer_index`` an integer position.
        option_columns: columns holding the options in order (``opa, opb, ...``), instead of ``options``.
        answer_index_base: 0 or 1, for ``answer_index``.
        source: the questions' source; default the file stem.
        id_prefix: ids are ``{id_prefix}-{id column}`` (or ``-{row}`` without one); default the source.
        images_dir: relative image paths are resolved against it.
        Other columns go to metadata.
    """
    mapping = dict(mapping or {})
    unknown = set(mapping) - FIELDS
    if unknown:
        raise BankError(f"unknown mapping keys {sorted(unknown)}; known: {sorted(FIELDS)}")
    source = source or path.stem
    prefix = id_prefix or source
    used = {mapping.get(f, f) for f in FIELDS} | set(option_columns or [])
    result = LoadResult()
    seen: set[str] = set()
    for index, record, row in _rows(path, result):
        original = row.get(mapping.get("id", "id"))
        try:
            question = clean_text(row.get(mapping.get("question", "question")), "question")
            options = _options(row, mapping, option_columns)
            answer = _answer(row, mapping, options, answer_index_base)
            images = _decode(row.get(mapping.get("images", "images"))) or []
            if isinstance(images, str):
                images = [images]
            if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
                raise RowError(f"images must be a list of paths, got {images!r}")
            if images_dir is not None:
                images = [i if Path(i).is_absolute() else str(Path(images_dir) / i) for i in images]
            qid = f"{prefix}-{original if original not in (None, '') else index}"
            if qid in seen:
                raise RowError(f"duplicate id {qid}")
        except RowError as err:
            result.reject(path, record, err, str(original) if original not in (None, "") else None)
            continue
        seen.add(qid)
        metadata = {k: v for k, v in row.items() if k not in used and v not in (None, "")}
        metadata["source_file"] = path.name
        result.questions.append(Question(
            id=qid, source=source, question=question, options=options, answer=answer,
            images=images, patient_info=str(row.get(mapping.get("patient_info", "patient_info")) or ""),
            modality=row.get(mapping.get("modality", "modality")) or None,
            question_type=row.get(mapping.get("question_type", "question_type")) or None,
            metadata=metadata))
    return result
