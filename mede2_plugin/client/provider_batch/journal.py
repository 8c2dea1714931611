"""The journal of the provider batches of one output file: what was sent where, before it is sent.

``<output>.batches.json`` next to the results file lists each batch of this output::

    {"version": 1, "batches": [
        {"label", "backend", "model", "state", "planned_at", "ids": {request id: request key},
         "file_id", "batch_id", "provider_state", "answered", "retried"}]}

``label`` (``mede2-<hex>``) names the batch at the provider (the uploaded file's name, the batch's
metadata or display name), so that a batch whose creation was not journaled (the process was
killed between the provider's answer and the journal write) is found again by listing. The
entry, with its request ids, is written before anything is uploaded; the file id before the
batch is created; the batch id as soon as it is known. States: ``planned`` -> ``uploaded``
(OpenAI) -> ``submitted`` -> ``collected`` (results written to the output). Every write is a
locked, atomic replacement of the file (:func:`mede2_plugin.core.files.update_json`).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from mede2_plugin.core.files import read_json, update_json

VERSION = 1
PLANNED, UPLOADED, SUBMITTED, COLLECTED = "planned", "uploaded", "submitted", "collected"


def journal_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".batches.json")


@dataclass
class BatchEntry:
    """One provider batch of the output (see the module docstring)."""

    label: str
    backend: str
    model: str
    ids: dict[str, str]
    state: str = PLANNED
    planned_at: float = field(default_factory=time.time)
    file_id: str | None = None
    batch_id: str | None = None
    provider_state: str | None = None
    answered: int = 0
    retried: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchEntry:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class BatchJournal:
    """Read and update ``<output>.batches.json`` for one backend and model."""

    def __init__(self, output: str | Path, backend: str, model: str) -> None:
        self.path = journal_path(output)
        self.backend = backend
        self.model = model

    def entries(self) -> list[BatchEntry]:
        """Every batch journaled for this output (none when there is no journal yet)."""
        if not self.path.exists():
            return []
        data, _ = read_json(self.path)
        if not isinstance(data, dict) or not isinstance(data.get("batches"), list):
            raise ValueError(f"{self.path}: not a batch journal (expected {{'batches': [...]}}); "
                             "move it aside to start over")
        return [BatchEntry.from_dict(item) for item in data["batches"]]

    def open_entries(self) -> list[BatchEntry]:
        """Batches of this backend and model whose results are not in the output yet."""
        return [e for e in self.entries()
                if e.state != COLLECTED and (e.backend, e.model) == (self.backend, self.model)]

    def plan(self, ids: dict[str, str]) -> BatchEntry:
        """A new batch of ``ids`` (request id -> request key), journaled before anything is sent."""
        entry = BatchEntry(label=f"mede2-{uuid.uuid4().hex[:16]}", backend=self.backend, model=self.model, ids=ids)
        self._write(entry)
        return entry

    def update(self, entry: BatchEntry, **changes: Any) -> None:
        """Change ``entry`` and write it."""
        for name, value in changes.items():
            setattr(entry, name, value)
        self._write(entry)

    def _write(self, entry: BatchEntry) -> None:
        def change(data: Any) -> dict[str, Any]:
            batches = list(data.get("batches") or []) if isinstance(data, dict) else []
            for index, item in enumerate(batches):
                if item.get("label") == entry.label:
                    batches[index] = asdict(entry)
                    break
            else:
                batches.append(asdict(entry))
            return {"version": VERSION, "batches": batches}

        update_json(self.path, change)
