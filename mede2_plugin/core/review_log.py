"""The reviews of people: append-only JSONL logs, one per kind, in the run's ``review/`` folder.

A review is one JSON line ``{"item", "reviewer", "time", ...}`` appended (under a lock, flushed
and fsynced) the moment a reviewer decides, so a closed browser or a killed server loses nothing.
Nothing is ever rewritten: a changed mind is a new line, and the latest line of an item by a
reviewer is that reviewer's decision. Reviewers are kept apart by the ``reviewer`` field.

Where the folder is: ``<run>/review/`` for anything inside a ``mede2 run`` / ``mede2 demo``
output (the nearest folder above holding ``manifest.json``), else ``<folder>/review/`` of the
folder the app was opened on. No stage owns it, so redoing a stage never moves a review aside.
A stage finds it with :func:`find_review_dir` (the nearest ``review/`` above its own folder).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from mede2_plugin.core.files import file_lock

REVIEW_DIR = "review"
RUN_MANIFEST = "manifest.json"
#: the log of each kind of review, in the review folder
LOGS = {"rewrites": "rewrites.jsonl", "judge": "judge_audit.jsonl", "pairs": "pairs.jsonl"}
REVIEWER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_reviewer(name: str) -> str:
    """The reviewer name, stripped; a name that cannot be a file name part raises ``ValueError``."""
    name = (name or "").strip()
    if not REVIEWER_NAME.match(name):
        raise ValueError(f"reviewer name {name!r}: use 1-64 letters, digits, '.', '_' or '-' (no spaces)")
    return name


def content_sha(value: Any) -> str:
    """A short, stable hash of a JSON value: what a reviewer saw, to tell a stale review."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def run_root(folder: str | Path) -> Path:
    """The run a folder belongs to (nearest folder with ``manifest.json``, itself included), else the folder."""
    folder = Path(folder).resolve()
    for candidate in (folder, *folder.parents):
        if (candidate / RUN_MANIFEST).is_file():
            return candidate
    return folder


def find_review_dir(path: str | Path) -> Path | None:
    """The review folder that holds reviews of ``path`` (a stage folder or file): the nearest
    ``review/`` above it with a review log, looking no higher than its run's root."""
    start = Path(path).resolve()
    start = start if start.is_dir() else start.parent
    for candidate in (start, *start.parents):
        folder = candidate / REVIEW_DIR
        if any((folder / name).is_file() for name in LOGS.values()):
            return folder
        if (candidate / RUN_MANIFEST).is_file():
            return None
    return None


class ReviewLog:
    """One kind of review (``rewrites``, ``judge`` or ``pairs``) in a review folder."""

    def __init__(self, review_dir: str | Path, kind: str) -> None:
        if kind not in LOGS:
            raise ValueError(f"unknown review kind {kind!r}; known: {', '.join(LOGS)}")
        self.kind = kind
        self.path = Path(review_dir) / LOGS[kind]
        self.damaged_lines: list[int] = []

    def append(self, item: str, reviewer: str, **fields: Any) -> dict[str, Any]:
        """Write one decision now (locked, fsynced); returns the record written."""
        record = {"item": str(item), "reviewer": check_reviewer(reviewer),
                  "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **fields}
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        with file_lock(self.path), self.path.open("ab") as handle:
            if handle.tell() and not self._ends_with_newline():
                handle.write(b"\n")  # a torn last line (a crash mid-write) stays on its own line
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        return record

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"

    def records(self) -> list[dict[str, Any]]:
        """Every review in writing order. A line that is not JSON can only be one cut off by a
        crash mid-write: it is skipped and its number kept in :attr:`damaged_lines`."""
        self.damaged_lines = []
        if not self.path.exists():
            return []
        rows = []
        for number, raw in enumerate(self.path.read_bytes().split(b"\n"), start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError:
                self.damaged_lines.append(number)
                continue
            if isinstance(row, dict) and "item" in row and "reviewer" in row:
                rows.append(row)
        return rows

    def latest(self, reviewer: str | None = None) -> dict[tuple[str, str], dict[str, Any]]:
        """``{(item, reviewer): latest record}``, for one reviewer or all."""
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for row in self.records():
            if reviewer is None or row["reviewer"] == reviewer:
                out[(row["item"], row["reviewer"])] = row
        return out

    def by_item(self, reviewer: str) -> dict[str, dict[str, Any]]:
        """``{item: latest record}`` of one reviewer."""
        return {item: row for (item, _), row in self.latest(reviewer).items()}

    def reviewers(self) -> list[str]:
        return sorted({row["reviewer"] for row in self.records()})

