"""A question bank on disk and how to load it: the ``bank:`` / ``banks:`` entries of every config."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: loader options whose string values are paths (resolved with the bank, hashed as its inputs)
PATH_OPTION_SUFFIXES = ("_dir", "_file", "_path")


@dataclass
class BankSource:
    """A question bank on disk and how to load it.

    Attributes:
        path: the bank's file or folder.
        format: a format of :data:`mede2_plugin.data.FORMATS` (``bank`` for our own JSONL banks,
            ``medqa``, ``medbullets``, ``medxpertqa``, ``mmmu``, ``mmmu_pro``, ``generic``).
        options: keyword options passed to the loader (e.g. ``images_dir``, ``mapping``).
        name: a label for reports (default: the file name).
    """

    path: str = ""
    format: str = "bank"
    options: dict[str, Any] = field(default_factory=dict)
    name: str | None = None

    @property
    def label(self) -> str:
        return self.name or Path(self.path).name

    def path_options(self) -> dict[str, str]:
        """The loader options that name files or folders (``images_dir``, ...)."""
        return {k: v for k, v in self.options.items() if isinstance(v, str) and k.endswith(PATH_OPTION_SUFFIXES)}

    def files(self) -> list[str]:
        """The bank itself and every file or folder its options name."""
        return [self.path, *self.path_options().values()]

    def media_roots(self) -> list[str]:
        """Folders the bank's images may lie in: the bank's folder and the folders its options name."""
        path = Path(self.path)
        return [str(path if path.is_dir() else path.parent), *self.path_options().values()]

    def load(self, **media: Any):
        """Load with :func:`mede2_plugin.data.load_bank`; returns its ``LoadResult``.

        ``media``: ``media_roots`` / ``allow_outside_media`` of :func:`~mede2_plugin.data.load_bank`.
        """
        from mede2_plugin.data import load_bank

        if not self.path:
            raise ValueError("no bank path given")
        return load_bank(self.path, self.format, **media, **self.options)


def parse_bank_spec(spec: str) -> BankSource:
    """``PATH`` or ``PATH:FORMAT`` (command-line form of :class:`BankSource`)."""
    path, _, fmt = spec.rpartition(":") if re.search(r":[A-Za-z_]+$", spec) else (spec, "", "")
    return BankSource(path=path or spec, format=fmt or "bank")
