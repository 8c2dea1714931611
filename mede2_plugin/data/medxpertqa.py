"""MedXpertQA ``Text/*.jsonl`` and ``MM/*.jsonl``, in the Hugging Face layout and in the shape the
official evaluation code converts them to.

Keys: ``id`` ("Text-0" / "MM-0"), ``question`` (ending with "\\nAnswer Choices: (A) ... (B) ...",
stripped here because our prompt renders the options itself), ``options`` (``{letter: text}`` or
``[{letter, content}]``), ``label`` ("A" or ``["A"]``), ``images`` (MM only: file names or
``[{image_path}]``), ``medical_task``, ``body_system``, ``question_type``.
"""

from __future__ import annotations

import re
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

ANSWER_CHOICES = re.compile(r"\s*\n\s*Answer Choices:\s*\(A\).*\Z", re.DOTALL)


def strip_answer_choices(question: str) -> str:
    """Remove the trailing "Answer Choices: (A) ..." part MedXpertQA appends to every stem."""
    return ANSWER_CHOICES.sub("", question).strip()


def medxpertqa_options(raw: Any) -> dict[str, str]:
    if isinstance(raw, list):
        if not all(isinstance(o, dict) and {"letter", "content"} <= set(o) for o in raw):
            raise RowError("options list entries must be {letter, content}")
        raw = {o["letter"]: o["content"] for o in raw}
    return check_options(raw)


def medxpertqa_images(raw: Any) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise RowError(f"images must be a list, got {type(raw).__name__}")
    names = []
    for item in raw:
        name = item.get("image_path") if isinstance(item, dict) else item
        if not isinstance(name, str) or not name.strip():
            raise RowError(f"bad image entry {item!r}")
        names.append(name.strip())
    return names


def load_medxpertqa(path: Path, images_dir: str | Path | None = None, source: str | None = None,
                    check_images: bool = True) -> LoadResult:
    """Load a MedXpertQA JSONL file.

    Args:
        images_dir: folder holding the unzipped ``images.zip``; image names become paths inside
            it. Without it, names are kept as given (relative to the bank's media folder).
        source: default ``medxpertqa_mm`` for ``MM-*`` ids or rows with images, else
            ``medxpertqa_text``.
        check_images: with ``images_dir``, reject rows whose image files are missing.

    Ids are ``medxpertqa-{id}`` (``medxpertqa-MM-0``); ``medical_task``, ``body_system`` and the
    original id go to metadata, ``question_type`` (Reasoning / Understanding) to the field.
    """
    result = LoadResult()
    base = Path(images_dir) if images_dir is not None else None
    for _, line, row in iter_json_lines(path, result):
        original_id = row.get("id")
        try:
            original_id = clean_text(original_id, "id")
            options = medxpertqa_options(row.get("options"))
            answer = check_answer(row.get("label"), options)
            question = strip_answer_choices(clean_text(row.get("question"), "question"))
            if not question:
                raise RowError("question is empty once the answer choices are stripped")
            images = medxpertqa_images(row.get("images"))
            if base is not None:
                images = [str(base / name) for name in images]
                missing = [p for p in images if check_images and not Path(p).is_file()]
                if missing:
                    raise RowError(f"image file(s) not found: {missing}")
        except RowError as err:
            result.reject(path, f"line {line}", err, original_id if isinstance(original_id, str) else None)
            continue
        row_source = source or ("medxpertqa_mm" if original_id.startswith("MM") or images
                                else "medxpertqa_text")
        metadata = {"original_id": original_id, "source_file": path.name, "source_line": line}
        for key in ("medical_task", "body_system"):
            if row.get(key) is not None:
                metadata[key] = row[key]
        result.questions.append(Question(
            id=f"medxpertqa-{original_id}", source=row_source, question=question, options=options,
            answer=answer, images=images, question_type=row.get("question_type"), metadata=metadata))
    return result
