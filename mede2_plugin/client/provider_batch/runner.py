"""Answer the claimed requests of one ``run_batch`` call through the provider's batch API.

1. Batches journaled for this output and not collected yet (a killed run) are taken up again:
   their pending requests are not sent again; a batch whose creation was not journaled is found
   by its label; one that was never created is created now, or replanned when its requests
   changed.
2. The other requests are encoded one by one and cut into batches under the provider's request
   and byte limits (``batch_max_requests`` / ``batch_max_bytes`` lower them) and the budget: the
   journal entry first, then the upload (OpenAI), then the batch.
3. Every open batch is polled, first after ``batch_poll_s``, then 1.5 times longer each time up
   to ``batch_poll_max_s``; a progress line shows the batches, their states and the items done.
4. A finished batch's answers are written like interactive ones (cache first, then the row, at
   the batch price, with ``batch_id``); its failed and expired items are asked again as
   ``batch_retry`` says: one by one (``interactive``), in one more batch (``batch``), or written
   as errors (``fail``; a rerun asks again).

Requests another run holds a claim on (see :mod:`mede2_plugin.client.claims`) wait; when that
run gives them up they are sent in a later batch.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mede2_plugin.client.backends.base import BackendError
from mede2_plugin.client.cache import cache_key
from mede2_plugin.client.claims import ClaimedWork
from mede2_plugin.client.config import ChatRequest
from mede2_plugin.client.cost import call_cost
from mede2_plugin.client.limits import estimate_tokens
from mede2_plugin.client.provider_batch.base import (
    BatchStatus,
    ProviderBatches,
    create_provider,
)
from mede2_plugin.client.provider_batch.journal import (
    COLLECTED,
    SUBMITTED,
    UPLOADED,
    BatchEntry,
    BatchJournal,
)

if TYPE_CHECKING:
    from mede2_plugin.client.batch import _Run

Item = tuple[ChatRequest, "str | None"]
#: a first round and, with ``batch_retry: batch``, one more for the items it did not answer
MAX_BATCH_ROUNDS = 2
#: polls in a row that fail (after the SDK's retries) before a batch counts as lost
MAX_FAILED_POLLS = 5


class BatchItemError(BackendError):
    """An item a provider batch did not answer (failed, expired, cancelled)."""


@dataclass
class _Tracked:
    """A submitted batch and the requests of this run it answers."""

    entry: BatchEntry
    items: dict[str, Item]
    status: BatchStatus | None = None
    estimate_usd: float = 0.0
    failed_polls: int = 0


@dataclass
class _Chunk:
    items: list[Item] = field(default_factory=list)
    entries: list[Any] = field(default_factory=list)
    size: int = 0
    estimate_usd: float = 0.0


async def run_provider_batches(run: _Run, work: ClaimedWork, interactive: Callable[[], Awaitable[int]]) -> int:
    """Answer ``work``'s requests through provider batches; ``interactive()`` sends what is left in
    ``work`` one by one (failed items with ``batch_retry: interactive``). Returns how many were sent."""
    provider = create_provider(run.config)
    run.open_bar()
    try:
        return await _BatchRun(run, work, provider, interactive).run()
    finally:
        await provider.aclose()


class _BatchRun:
    def __init__(self, run: _Run, work: ClaimedWork, provider: ProviderBatches,
                 interactive: Callable[[], Awaitable[int]]) -> None:
        self.run_state = run
        self.config = run.config
        self.work = work
        self.provider = provider
        self.interactive = interactive
        self.journal = BatchJournal(run.store.path, run.config.backend, run.config.model)
        self.open: list[_Tracked] = []
        self.retries: list[tuple[ChatRequest, str | None, str]] = []
        self.started = 0
        self.reserved_usd = 0.0
        self.answered = 0
        self.items_total = 0
        self.states: Counter[str] = Counter()

    async def run(self) -> int:
        items = self._take_ready()
        resumed = await self._adopt(items)
        rounds, delay = 1, self.config.batch_poll_s
        while True:
            if items:
                await self._submit_new(list(items.values()))
                items = {}
            if not self.open:
                if self.work.waiting:  # keys another run is answering: wait for them, or take them over
                    await asyncio.sleep(min(delay, self.work.max_poll_s))
                    items = self._take_ready()
                    continue
                if self.retries and self.config.batch_retry == "batch" and rounds < MAX_BATCH_ROUNDS:
                    rounds += 1
                    items = {request.id: (request, key) for request, key, _ in self.retries}
                    self.retries = []
                    delay = self.config.batch_poll_s
                    continue
                break
            if not resumed:
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, self.config.batch_poll_max_s)
            resumed = False
            await self._poll()
            items = self._take_ready()
        await self._retry_rest()
        return self.started

    # -- taking work ----------------------------------------------------------------------
    def _take_ready(self) -> dict[str, Item]:
        return {request.id: (request, key) for request, key in self.work.take_ready()}

    def _journal_key(self, item: Item) -> str:
        request, key = item
        return key if key is not None else cache_key(self.config, request)

    async def _adopt(self, items: dict[str, Item]) -> bool:
        """Take up the open batches of the journal; returns whether there were any."""
        adopted = False
        for entry in self.journal.open_entries():
            mine = {rid: items[rid] for rid, key in entry.ids.items()
                    if rid in items and self._journal_key(items[rid]) == key}
            if entry.batch_id is None:  # killed before the batch id was journaled: was it created?
                found = await self.provider.find_batch(entry.label, entry.planned_at)
                if found is not None:
                    self.journal.update(entry, state=SUBMITTED, batch_id=found)
                elif len(mine) != len(entry.ids):  # never created, and its requests changed: plan anew
                    self.journal.update(entry, state=COLLECTED, provider_state="abandoned before creation")
                    continue
            if not mine:  # its results are all in the output already
                self.journal.update(entry, state=COLLECTED)
                continue
            for rid in mine:
                del items[rid]
            tracked = _Tracked(entry, mine)
            if entry.batch_id is None and not await self._submit(tracked, None, resumed=True):
                continue
            self.open.append(tracked)
            self.started += len(mine)
            self.items_total += len(mine)
            adopted = True
        return adopted

    # -- submitting -----------------------------------------------------------------------
    def _estimate_usd(self, request: ChatRequest) -> float:
        price = self.run_state.batch_price
        if price is None:
            return 0.0
        prompt = estimate_tokens(request.messages, None, 0)
        return call_cost(prompt, (request.max_tokens or 512) * request.n, price) or 0.0

    def _fits_budget(self, extra_usd: float) -> bool:
        budget = self.run_state.budget
        if budget.cap_usd is None:
            return True
        if budget.spent_usd + self.reserved_usd + extra_usd > budget.cap_usd:
            budget.exhausted = True
        return not budget.exhausted

    async def _submit_new(self, items: list[Item]) -> None:
        """Cut ``items`` into batches under the limits and the budget, and submit each."""
        max_requests = min(self.config.batch_max_requests or self.provider.max_requests, self.provider.max_requests)
        max_bytes = min(self.config.batch_max_bytes or self.provider.max_bytes, self.provider.max_bytes)
        chunk = _Chunk()
        for request, key in items:
            try:
                entry, size = await self.provider.encode(request)
            except (OSError, ValueError) as err:  # e.g. an unreadable image: this item fails, not the batch
                self.work.release(key)
                self.run_state.record_failure(request, err)
                continue
            estimate = self._estimate_usd(request)
            if chunk.items and (len(chunk.items) >= max_requests or chunk.size + size > max_bytes):
                await self._submit_chunk(chunk)
                chunk = _Chunk()
            if not self._fits_budget(chunk.estimate_usd + estimate):
                break
            chunk.items.append((request, key))
            chunk.entries.append(entry)
            chunk.size += size
            chunk.estimate_usd += estimate
        if chunk.items:
            await self._submit_chunk(chunk)

    async def _submit_chunk(self, chunk: _Chunk) -> None:
        ids = {request.id: self._journal_key((request, key)) for request, key in chunk.items}
        tracked = _Tracked(self.journal.plan(ids), {request.id: (request, key) for request, key in chunk.items},
                           estimate_usd=chunk.estimate_usd)
        self.reserved_usd += chunk.estimate_usd
        if await self._submit(tracked, chunk.entries, resumed=False):
            self.open.append(tracked)
            self.started += len(chunk.items)
            self.items_total += len(chunk.items)
            self.run_state.summary.calls += len(chunk.items)

    async def _submit(self, tracked: _Tracked, entries: list[Any] | None, resumed: bool) -> bool:
        """Upload (OpenAI) and create the batch of ``tracked``, journaling each id as it comes;
        a run that was killed looks for what it may have made first. False when it failed (its
        items then get error rows; a rerun asks again)."""
        entry = tracked.entry
        try:
            if entries is None:
                entries = [(await self.provider.encode(request))[0] for request, _ in tracked.items.values()]
            if self.provider.uploads and entry.file_id is None:
                file_id = await self.provider.find_upload(entry.label, entry.planned_at) if resumed else None
                if file_id is None:
                    file_id = await self.provider.upload(entry.label, entries)
                self.journal.update(entry, state=UPLOADED, file_id=file_id)
            if entry.batch_id is None:
                try:
                    batch_id = await self.provider.create(entry.label, entry.file_id if self.provider.uploads else entries)
                except Exception:  # the provider may have made it before the error (a timeout): look
                    batch_id = await self.provider.find_batch(entry.label, entry.planned_at)
                    if batch_id is None:
                        raise
                self.journal.update(entry, state=SUBMITTED, batch_id=batch_id)
                self.run_state.summary.batches += 1
            return True
        except Exception as err:  # noqa: BLE001 - the items fail with the reason; the run goes on
            for request, key in tracked.items.values():
                self.work.release(key)
                self.run_state.record_failure(request, err)
            self.reserved_usd -= tracked.estimate_usd
            self.journal.update(entry, state=COLLECTED, provider_state=f"not submitted: {type(err).__name__}")
            return False

    # -- polling and collecting -----------------------------------------------------------
    async def _poll(self) -> None:
        for tracked in list(self.open):
            try:
                tracked.status = await self.provider.status(tracked.entry.batch_id)
                tracked.failed_polls = 0
            except Exception as err:  # noqa: BLE001 - a failed look is tried again at the next poll
                tracked.failed_polls += 1
                reason = f"could not get batch {tracked.entry.batch_id}: {type(err).__name__}: {err}"
                self._say(reason)
                if tracked.failed_polls >= MAX_FAILED_POLLS:  # gone (deleted, another account): ask again
                    self.retries.extend((request, key, reason) for request, key in tracked.items.values())
                    self.reserved_usd -= tracked.estimate_usd
                    self.journal.update(tracked.entry, state=COLLECTED, provider_state="lost")
                    self.open.remove(tracked)
                continue
            if tracked.status.state != tracked.entry.provider_state:
                self.journal.update(tracked.entry, provider_state=tracked.status.state)
            if tracked.status.terminal:
                await self._collect(tracked)
                self.open.remove(tracked)
        self._progress()

    async def _collect(self, tracked: _Tracked) -> None:
        entry = tracked.entry
        results = await self.provider.results(entry.batch_id)
        answered = 0
        for rid, (request, key) in tracked.items.items():
            completion = results.completions.get(rid)
            if completion is not None and completion.samples:
                if len(completion.samples) < request.n and not completion.warning:
                    completion.warning = f"{len(completion.samples)} of {request.n} samples: the batch returned fewer"
                self.run_state.record_success(request, completion, key, batch_id=entry.batch_id)
                answered += 1
            else:
                self.retries.append((request, key, results.errors.get(rid) or results.missing))
        self.answered += answered
        self.reserved_usd -= tracked.estimate_usd
        self.states[tracked.status.state if tracked.status else "done"] += 1
        self.journal.update(entry, state=COLLECTED, answered=answered, retried=len(tracked.items) - answered)

    async def _retry_rest(self) -> None:
        """Items no batch answered: one by one (``batch_retry: interactive``), else error rows."""
        if not self.retries:
            return
        if self.config.batch_retry == "interactive":
            for request, key, _ in self.retries:
                self.work.ready.append((request, key))
            count = len(self.retries)
            self.retries = []
            sent = await self.interactive()
            self.started -= count - sent  # the budget may have stopped some
            return
        for request, key, reason in self.retries:
            self.work.release(key)
            self.run_state.record_failure(request, BatchItemError(reason))
        self.retries = []

    # -- progress -------------------------------------------------------------------------
    def _progress(self) -> None:
        states = Counter(t.status.state if t.status else "submitted" for t in self.open) + self.states
        done = self.answered + sum((t.status.done or 0) for t in self.open if t.status)
        shown = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
        self._say(f"batches: {sum(states.values())} ({shown}); items done {done}/{self.items_total}")

    def _say(self, text: str) -> None:
        if not self.config.progress:
            return
        line = f"[{self.run_state.stage}] {text}"
        bar = self.run_state.bar
        if bar is not None:
            bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)
