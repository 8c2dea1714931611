"""The table of question-bank formats: ``name -> loader``, extended with :func:`register_format`.

A loader is ``loader(path: Path, **options) -> LoadResult``. Like LLaMA-Factory's
``DATASET_CONVERTERS`` / ``register_dataset_converter``, the table is a plain dict so a user can
add a format for their own bank without touching this package.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mede2_plugin.core.media import MediaPolicy, MediaRefused
from mede2_plugin.data.common import BankError, LoadResult, Rejected

Loader = Callable[..., LoadResult]

FORMATS: dict[str, Loader] = {}


def register_format(name: str, loader: Loader, overwrite: bool = False) -> Loader:
    """Add ``loader`` under ``name``; refuses to replace an existing entry unless ``overwrite``."""
    if name in FORMATS and not overwrite and FORMATS[name] is not loader:
        raise ValueError(f"question-bank format {name!r} is already registered")
    FORMATS[name] = loader
    return loader


def load_bank(path: str | Path, format: str, strict: bool = False, media_roots: tuple[str, ...] | list[str] = (),
              allow_outside_media: bool = False, **options: Any) -> LoadResult:
    """Load a question bank in a registered ``format``.

    Args:
        path: the bank's file (or folder, for formats that accept one, e.g. ``mmmu``).
        format: a key of :data:`FORMATS` (``medqa``, ``medbullets``, ``medxpertqa``, ``mmmu``,
            ``mmmu_pro``, ``generic``, ``bank``).
        strict: raise :class:`BankError` listing the rejected rows instead of returning them.
        media_roots: further folders the questions' images may lie in, besides the bank's own
            folder and the folders its options name (``images_dir``).
        allow_outside_media: accept images anywhere (absolute paths, ``file://``, ``..``).
        **options: passed to the loader (see each loader's docstring).

    Returns:
        A :class:`LoadResult`: ``.questions`` accepted, ``.rejected`` rows with file, record and
        reason, ``.skipped`` counts of rows left out on purpose. A question whose image lies outside
        the data folders, or is not an image, is rejected (:class:`~mede2_plugin.core.media.MediaPolicy`).
    """
    if format not in FORMATS:
        raise BankError(f"unknown question-bank format {format!r}; known: {sorted(FORMATS)}")
    path = Path(path)
    if not path.exists():
        raise BankError(f"{path}: no such file or folder")
    folders = {k: str(Path(v).resolve()) for k, v in options.items() if k.endswith("_dir") and isinstance(v, (str, Path))}
    result = FORMATS[format](path, **{**options, **folders})
    policy = MediaPolicy.of(path.resolve() if path.is_dir() else path.resolve().parent,
                            [*folders.values(), *media_roots], allow_outside_media)
    kept = []
    for question in result.questions:
        try:
            policy.check_all(question.images)
        except MediaRefused as err:
            result.rejected.append(Rejected(str(path), f"question {question.id}", str(err), question.id))
            continue
        kept.append(question)
    result.questions = kept
    if strict and result.rejected:
        shown = "\n  ".join(str(r) for r in result.rejected[:10])
        more = f"\n  ... and {len(result.rejected) - 10} more" if len(result.rejected) > 10 else ""
        raise BankError(f"{path}: {len(result.rejected)} row(s) rejected:\n  {shown}{more}")
    return result
