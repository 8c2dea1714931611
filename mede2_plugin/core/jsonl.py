"""Append-only JSONL files keyed by a stable id: the crash-safe output of every stage.

A stage opens its output with :class:`JsonlStore`, asks which ids are already done, and appends
one line per finished item, flushed (and fsynced) as it goes. A process killed in the middle of a
write leaves at most one torn last line; the next open moves it aside into ``<file>.torn`` (kept
for inspection, never silently dropped) and the item is simply done again.

A store holds the output's single-writer lock (:class:`~mede2_plugin.core.locks.WriterLock`) from
open to close: a second process opening the same output is refused at once, naming the first,
or waits for it (``--wait``); it never interleaves or repeats the first one's work. Readers that
only look (:func:`read_jsonl`, :func:`latest_records`) take no lock.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mede2_plugin.core.files import atomic_writer
from mede2_plugin.core.locks import WriterLock


class JsonlError(ValueError):
    """A malformed line, reported with its file and line number."""


def read_jsonl(path: str | Path, allow_torn_tail: bool = False, with_lines: bool = False) -> Iterator[Any]:
    """Yield the objects of a JSONL file; a bad line raises :class:`JsonlError` naming file and line.

    With ``allow_torn_tail`` an unterminated, unparsable last line (a crash mid-write) is skipped;
    with ``with_lines`` each object comes as ``(line number, object)``.
    """
    path = Path(path)
    with path.open("rb") as handle:
        lines = handle.read().split(b"\n")
    last = len(lines) - 1
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except UnicodeDecodeError as err:
            raise JsonlError(f"{path}:{number}: not UTF-8 text ({err.reason})") from None
        except json.JSONDecodeError as err:
            if allow_torn_tail and number - 1 == last:
                return
            raise JsonlError(f"{path}:{number}: not valid JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise JsonlError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        yield (number, record) if with_lines else record


def latest_records(path: str | Path, key: str = "id") -> dict[str, dict[str, Any]]:
    """The last record of each id in a JSONL file, in first-written order (no lock; a torn last
    line is skipped; a missing file is empty)."""
    path = Path(path)
    if not path.exists():
        return {}
    return {str(record[key]): record for record in read_jsonl(path, allow_torn_tail=True) if key in record}


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Replace ``path`` with ``records``, one JSON line each, atomically; return the count."""
    count = 0
    with atomic_writer(path, text=True) as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


class JsonlStore:
    """Append-only JSONL keyed by ``key``; the last record written for an id wins on reading.

    Args:
        path: the output file; created with its folder when missing.
        key: the field holding the stable id.
        fsync: fsync after every append (crash-safe against power loss, slower); flush always.
        wait: wait for another process writing ``path`` instead of refusing (default: ``--wait``).
    """

    def __init__(self, path: str | Path, key: str = "id", fsync: bool = False, wait: bool | None = None) -> None:
        self.path = Path(path)
        self.key = key
        self.fsync = fsync
        if self.path.is_dir():
            raise IsADirectoryError(f"{self.path} is a folder, not an output file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock: WriterLock | None = WriterLock(self.path, wait=wait)
        self._records: dict[str, dict[str, Any]] = {}
        self._handle = None
        try:
            if self.path.exists():
                self._repair_torn_tail()
                for record in read_jsonl(self.path):
                    if key not in record:
                        raise JsonlError(f"{self.path}: a record has no {key!r} field: {str(record)[:120]}")
                    self._records[str(record[key])] = record
        except BaseException:
            self.close()
            raise

    def _repair_torn_tail(self) -> None:
        data = self.path.read_bytes()
        if not data or data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1
        tail = data[cut:]
        try:
            json.loads(tail)
            with self.path.open("ab") as handle:  # complete record, only the newline missing
                handle.write(b"\n")
            return
        except json.JSONDecodeError:
            pass
        with self.path.with_name(self.path.name + ".torn").open("ab") as aside:
            aside.write(tail + b"\n")
        with self.path.open("r+b") as handle:
            handle.truncate(cut)

    def __contains__(self, item_id: object) -> bool:
        return str(item_id) in self._records

    def __len__(self) -> int:
        return len(self._records)

    def get(self, item_id: str) -> dict[str, Any] | None:
        return self._records.get(str(item_id))

    def ids(self) -> set[str]:
        return set(self._records)

    def records(self) -> list[dict[str, Any]]:
        """The latest record of each id, in first-written order."""
        return list(self._records.values())

    def append(self, record: dict[str, Any]) -> None:
        if self.key not in record:
            raise KeyError(f"record for {self.path} has no {self.key!r} field")
        if self._handle is None:
            if self._lock is None:
                raise ValueError(f"{self.path}: the store is closed")
            self._handle = self.path.open("a", encoding="utf-8")
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()
        if self.fsync:
            os.fsync(self._handle.fileno())
        self._records[str(record[self.key])] = record

    def close(self) -> None:
        """Flush and close the file, then let another writer in."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "JsonlStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
