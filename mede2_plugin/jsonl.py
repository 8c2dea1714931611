"""Append-only JSONL files keyed by a stable id: the crash-safe output of every stage.

A stage opens its output with :class:`JsonlStore`, asks which ids are already done, and appends
one line per finished item, flushed (and fsynced) as it goes. A process killed in the middle of a
write leaves at most one torn last line; the next open moves it aside into ``<file>.torn`` (kept
for inspection, never silently dropped) and the item is simply done again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


class JsonlError(ValueError):
    """A malformed line, reported with its file and line number."""


def read_jsonl(path: str | Path, allow_torn_tail: bool = False) -> Iterator[dict[str, Any]]:
    """Yield the objects of a JSONL file; a bad line raises :class:`JsonlError` naming file and line.

    With ``allow_torn_tail`` an unterminated, unparsable last line (a crash mid-write) is skipped.
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
        except json.JSONDecodeError as err:
            if allow_torn_tail and number - 1 == last:
                return
            raise JsonlError(f"{path}:{number}: not valid JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise JsonlError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        yield record


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Write records to a new file atomically (temp file, then rename); return the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    with tmp.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return count


class JsonlStore:
    """Append-only JSONL keyed by ``key``; the last record written for an id wins on reading.

    Args:
        path: the output file; created with its folder when missing.
        key: the field holding the stable id.
        fsync: fsync after every append (crash-safe against power loss, slower); flush always.
    """

    def __init__(self, path: str | Path, key: str = "id", fsync: bool = False) -> None:
        self.path = Path(path)
        self.key = key
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._records: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            self._repair_torn_tail()
            for record in read_jsonl(self.path):
                if key not in record:
                    raise JsonlError(f"{self.path}: a record has no {key!r} field: {str(record)[:120]}")
                self._records[str(record[key])] = record
        self._handle = None

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
            self._handle = self.path.open("a", encoding="utf-8")
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()
        if self.fsync:
            os.fsync(self._handle.fileno())
        self._records[str(record[self.key])] = record

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> "JsonlStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
