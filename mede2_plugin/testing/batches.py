"""Provider batch jobs of the fake servers: stored files, batches that finish after a delay, records.

Both fake servers keep their batches in a :class:`BatchBook`; each renders them in its provider's
wire format (:mod:`.fake_openai`: the OpenAI Batch and Files APIs; :mod:`.fake_gemini`: Gemini's
batch mode with inline requests). A batch is answered all at once, ``batch_delay`` seconds after
it was created, the first time it is looked at after that (as a provider answers in the
background): each item through the server's own ``answer`` (the reply, usage and ``max_samples``
of interactive calls), except

* an item for which ``batch_faults(item_key, body)`` gives a status fault (``"500"``, ``"400"``,
  :meth:`Fault.server_error`): that item fails with that status;
* an item for which ``batch_expires(batch_number, item_key)`` is true: it is left unanswered and
  the batch ends ``expired`` (batches are numbered from 0 in creation order).

A cancelled batch ends at once; the items it did not answer are reported like expired ones.

Records that tests read: :attr:`BatchBook.batches` (every batch created, in order),
:attr:`BatchBook.answered` (how many times each item key was answered, over all batches) and
:attr:`BatchBook.files`.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

RUNNING, COMPLETED, EXPIRED, CANCELLED, FAILED = "running", "completed", "expired", "cancelled", "failed"


@dataclass
class FakeFile:
    """An uploaded (or result) file."""

    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int = field(default_factory=lambda: int(time.time()))


@dataclass
class ItemResult:
    """What became of one item: ``status`` 200 with ``response``, an error status with ``error``,
    or ``expired`` (not answered)."""

    key: str
    status: int = 200
    response: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    expired: bool = False


@dataclass
class FakeBatch:
    """One batch: its items (``(key, request body)``), labels and, once finished, the results."""

    id: str
    number: int
    items: list[tuple[str, dict[str, Any]]]
    labels: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.monotonic)
    created_at: int = field(default_factory=lambda: int(time.time()))
    state: str = RUNNING
    finished_at: int | None = None
    results: list[ItemResult] | None = None
    files: dict[str, str] = field(default_factory=dict)  # provider-specific: output/error file ids

    @property
    def done(self) -> bool:
        return self.state != RUNNING

    def counts(self) -> tuple[int, int, int]:
        """``(total, completed, failed)``."""
        results = self.results or []
        return (len(self.items), sum(1 for r in results if r.status == 200 and not r.expired),
                sum(1 for r in results if r.status != 200 or r.expired))


class BatchBook:
    """The files and batches of one fake server (see the module docstring).

    Args:
        answer: the server's ``answer(body, index)``: a 200 response body for one request.
        error_body: the server's ``error_body(status, message)``.
        delay: seconds from creation until a batch is answered.
        faults: ``faults(item_key, body)``: a :class:`~.server.Fault` (a status fault fails that
            item), or None.
        expires: ``expires(batch_number, item_key)``: true leaves that item unanswered (expired).
    """

    def __init__(self, answer: Callable[[dict[str, Any], int], dict[str, Any]],
                 error_body: Callable[[int, str], dict[str, Any]], delay: float = 0.0,
                 faults: Callable[[str, dict[str, Any]], Any] | None = None,
                 expires: Callable[[int, str], bool] | None = None) -> None:
        self.answer = answer
        self.error_body = error_body
        self.delay = delay
        self.faults = faults
        self.expires = expires
        self.files: dict[str, FakeFile] = {}
        self.batches: dict[str, FakeBatch] = {}
        self.answered: Counter[str] = Counter()
        self.lock = threading.RLock()
        self._answers = 0

    def add_file(self, filename: str, purpose: str, data: bytes, prefix: str = "file-") -> FakeFile:
        with self.lock:
            record = FakeFile(id=f"{prefix}{uuid.uuid4().hex[:16]}", filename=filename, purpose=purpose, data=data)
            self.files[record.id] = record
            return record

    def create(self, items: list[tuple[str, dict[str, Any]]], labels: dict[str, Any], prefix: str = "batch_",
               ) -> FakeBatch:
        with self.lock:
            batch = FakeBatch(id=f"{prefix}{uuid.uuid4().hex[:16]}", number=len(self.batches), items=items,
                              labels=labels)
            self.batches[batch.id] = batch
            return batch

    def fail(self, batch: FakeBatch, message: str) -> None:
        """End ``batch`` as failed (e.g. its input did not validate); no item is answered."""
        with self.lock:
            batch.state, batch.finished_at, batch.results = FAILED, int(time.time()), []
            batch.labels["failure"] = message

    def refresh(self, batch: FakeBatch) -> FakeBatch:
        """Answer ``batch`` if it is due (``delay`` after its creation)."""
        with self.lock:
            if not batch.done and time.monotonic() - batch.created >= self.delay:
                self._finish(batch, cancelled=False)
            return batch

    def cancel(self, batch: FakeBatch) -> FakeBatch:
        with self.lock:
            if not batch.done:
                self._finish(batch, cancelled=True)
            return batch

    def _finish(self, batch: FakeBatch, cancelled: bool) -> None:
        results = []
        for key, body in batch.items:
            if cancelled or (self.expires is not None and self.expires(batch.number, key)):
                results.append(ItemResult(key, expired=True))
                continue
            fault = self.faults(key, body) if self.faults is not None else None
            if fault is not None and fault.kind == "status":
                results.append(ItemResult(key, status=fault.status,
                                          error=self.error_body(fault.status, "injected item fault")))
                continue
            results.append(ItemResult(key, response=self.answer(body, self._answers)))
            self._answers += 1
            self.answered[key] += 1
        batch.results = results
        batch.finished_at = int(time.time())
        if cancelled:
            batch.state = CANCELLED
        elif any(r.expired for r in results):
            batch.state = EXPIRED
        else:
            batch.state = COMPLETED
