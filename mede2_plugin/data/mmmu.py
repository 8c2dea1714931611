"""MMMU and MMMU-Pro parquet files, health subjects only, embedded images written out.

MMMU: ``<Subject>/{dev,validation,test}-00000-of-00001.parquet`` with ``id``, ``question``
(``<image N>`` placeholders, also inside options), ``options`` (a stringified Python list, parsed
with ``ast.literal_eval``), ``explanation``, ``image_1``..``image_7`` (``{bytes, path}`` structs),
``img_type``, ``answer`` (a letter; open questions carry text and are rejected),
``topic_difficulty``, ``question_type``, ``subfield``. MMMU-Pro ``standard (10 options)``: the same
with ``subject`` instead of ``question_type``/``subfield``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from mede2_plugin.core.files import atomic_write_bytes
from mede2_plugin.core.questions import Question
from mede2_plugin.data.common import (
    BankError,
    LoadResult,
    RowError,
    check_answer,
    check_options,
    clean_text,
    options_from_list,
)

HEALTH_SUBJECTS = ("Basic_Medical_Science", "Clinical_Medicine", "Diagnostics_and_Laboratory_Medicine",
                   "Pharmacy", "Public_Health")
IMAGE_COLUMNS = tuple(f"image_{n}" for n in range(1, 8))
PLACEHOLDER = re.compile(r"<image (\d+)>")
ID_SUBJECT = re.compile(r"^(?:dev|validation|test)_(.+)_\d+$")
MAGIC = ((b"\x89PNG", ".png"), (b"\xff\xd8", ".jpg"), (b"GIF8", ".gif"), (b"BM", ".bmp"),
         (b"RIFF", ".webp"))


def parse_literal_list(raw: Any, name: str) -> list[Any]:
    """A stringified Python list (``"['a', 'b']"``), parsed safely; real lists pass through."""
    if isinstance(raw, list):
        return raw
    if not isinstance(raw, str):
        raise RowError(f"{name} is not a list literal: {raw!r}")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError) as err:
        raise RowError(f"{name} is not a Python list literal ({err.__class__.__name__}): {raw[:80]!r}") from None
    if not isinstance(value, (list, tuple)):
        raise RowError(f"{name} is not a list: {raw[:80]!r}")
    return list(value)


def image_suffix(data: bytes, name: str | None) -> str:
    for magic, suffix in MAGIC:
        if data.startswith(magic):
            return suffix
    suffix = Path(name).suffix.lower() if name else ""
    return suffix if re.fullmatch(r"\.[a-z0-9]{2,5}", suffix) else ".png"


def write_image(struct: Any, folder: Path, stem: str) -> str:
    """Write one embedded ``{bytes, path}`` image (unless an identical file is there); return its path."""
    if isinstance(struct, (bytes, bytearray)):
        struct = {"bytes": bytes(struct), "path": None}
    if not isinstance(struct, dict) or not struct.get("bytes"):
        raise RowError(f"image {stem} has no embedded bytes")
    data = bytes(struct["bytes"])
    target = folder / (re.sub(r"[^A-Za-z0-9_.-]+", "_", stem) + image_suffix(data, struct.get("path")))
    if not (target.is_file() and target.read_bytes() == data):
        atomic_write_bytes(target, data)
    return str(target)


def row_subject(row: dict[str, Any], path: Path) -> str:
    if row.get("subject"):
        return str(row["subject"])
    match = ID_SUBJECT.match(str(row.get("id", "")))
    return match.group(1) if match else path.parent.name


def parquet_files(path: Path, split: str | None) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*.parquet") if split is None or p.name.startswith(f"{split}-"))
    if not files:
        raise BankError(f"{path}: no {split + '-*' if split else '*'}.parquet files in this folder")
    return files


def _one_row(row: dict[str, Any], path: Path, source: str, images_dir: Path) -> Question:
    original_id = clean_text(row.get("id"), "id")
    if str(row.get("question_type", "")).strip().lower() == "open":
        raise RowError("open question: the answer is free text, not an option letter")
    question = clean_text(row.get("question"), "question")
    options = check_options(options_from_list(parse_literal_list(row.get("options"), "options")))
    answer = check_answer(row.get("answer"), options)
    present = [n for n, col in enumerate(IMAGE_COLUMNS, start=1) if row.get(col) is not None]
    referenced = {int(n) for text in [question, *options.values()] for n in PLACEHOLDER.findall(text)}
    missing = sorted(referenced - set(present))
    if missing:
        raise RowError(f"<image N> placeholder(s) {missing} have no image column")
    images = [write_image(row[f"image_{n}"], images_dir, f"{original_id}_image_{n}") for n in present]
    metadata: dict[str, Any] = {"original_id": original_id, "subject": row_subject(row, path),
                                "image_indices": present, "source_file": path.name}
    for key in ("subfield", "topic_difficulty", "explanation"):
        if row.get(key) not in (None, "", "?"):
            metadata[key] = row[key]
    if row.get("img_type"):
        try:
            metadata["img_type"] = parse_literal_list(row["img_type"], "img_type")
        except RowError:
            metadata["img_type"] = row["img_type"]
    return Question(id=f"{source}-{original_id}", source=source, question=question, options=options,
                    answer=answer, images=images, question_type=row.get("question_type"),
                    metadata=metadata)


def load_mmmu(path: Path, images_dir: str | Path | None = None, split: str | None = None,
              subjects: tuple[str, ...] | list[str] | None = HEALTH_SUBJECTS, source: str = "mmmu",
              min_options: int = 2) -> LoadResult:
    """Load MMMU parquet files (one file, or a folder searched recursively).

    Args:
        images_dir: where embedded images are written as ``{id}_image_{n}.{ext}``; default an
            ``images`` folder beside the parquet file.
        split: with a folder, only files named ``{split}-*.parquet`` (e.g. ``validation``; MMMU
            test answers are hidden).
        subjects: subjects kept (default the five health ones); ``None`` keeps all. Others are
            counted in ``skipped``, not rejected.
        source: ``mmmu`` or ``mmmu_pro``; ids are ``{source}-{id}``.
        min_options: rows with fewer options are rejected (MMMU-Pro's standard setting: 10).
    """
    import pyarrow.parquet as pq

    result = LoadResult()
    keep = set(subjects) if subjects is not None else None
    for file in parquet_files(path, split):
        folder = Path(images_dir) if images_dir is not None else file.parent / "images"
        try:
            parquet = pq.ParquetFile(file)
        except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a damaged file
            raise BankError(f"{file}: not a readable parquet file ({err})") from None
        index = 0
        for batch in parquet.iter_batches(batch_size=64):
            for row in batch.to_pylist():
                record = f"row {index}"
                index += 1
                subject = row_subject(row, file)
                if keep is not None and subject not in keep:
                    result.skip(f"subject {subject} not selected")
                    continue
                try:
                    question = _one_row(row, file, source, folder)
                    if len(question.options) < min_options:
                        raise RowError(f"{len(question.options)} options, this benchmark needs {min_options}")
                except RowError as err:
                    result.reject(file, record, err, str(row.get("id")) if row.get("id") else None)
                    continue
                result.questions.append(question)
    return result


def load_mmmu_pro(path: Path, images_dir: str | Path | None = None, split: str | None = None,
                  subjects: tuple[str, ...] | list[str] | None = HEALTH_SUBJECTS,
                  source: str = "mmmu_pro", min_options: int = 2) -> LoadResult:
    """Load MMMU-Pro ``standard`` parquet files; same options as :func:`load_mmmu`.

    Point it at ``standard (10 options)`` for the paper's setting (use ``min_options=10`` to
    insist on it). The ``vision`` setting has no question text and is rejected row by row.
    """
    return load_mmmu(path, images_dir=images_dir, split=split, subjects=subjects, source=source,
                     min_options=min_options)
