"""``run_batch``: the one loop every stage uses to call models.

It reads which ids the output already holds (a rerun skips them and retries only failed ones),
answers what it can from the response cache, sends the rest through the backend under the
concurrency, rpm/tpm and budget limits, and appends one row per id to the output as each answer
arrives. Output rows::

    {"id", "samples": [{"text", "reasoning", "finish_reason"(, "parsed")}],
     "usage": {"prompt_tokens", "completion_tokens"}, "cost_usd", "cached", "backend", "model",
     "stage", "error"}

``parsed`` is present when the request asked for JSON (``response_schema``): the reply's JSON
value read by the shared reader (:func:`mede2_plugin.core.replies.parse_json`), or None when it
holds none. ``cost_usd`` is what this row cost in this run (0.0 for a cache hit, None when the
model's price is unknown; at the batch price for ``mode: batch``). A failed item has
``samples: []`` and an ``error`` saying why.

Fewer samples than ``n``: when the server keeps returning fewer samples than asked (it caps or
ignores ``n``), the row is an answer with the samples that came back plus ``short_by`` (how many
are missing) and a ``warning`` saying why; stages use the samples there are, and a rerun does not
ask again (change the request, e.g. its ``n``, to ask anew). Rows answered through a provider
batch (``mode: batch``) also hold ``batch_id``.

Runs sharing a response cache claim each key before calling (:mod:`mede2_plugin.client.claims`):
a request another run is answering right now waits for that answer instead of being paid twice.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from mede2_plugin.client.backends.base import Backend, Completion, create_backend
from mede2_plugin.client.cache import ResponseCache, cache_key
from mede2_plugin.client.claims import ClaimedWork
from mede2_plugin.client.config import BackendConfig, ChatRequest
from mede2_plugin.client.cost import Budget, call_cost, format_usd, price_for
from mede2_plugin.client.limits import RateLimiter, estimate_tokens
from mede2_plugin.core.jsonl import JsonlStore, latest_records
from mede2_plugin.core.redact import Redactor
from mede2_plugin.core.replies import parse_json as parse_json_text

CACHE_DIR_NAME = ".mede2-cache"
MAX_ERROR_CHARS = 600


class OutputWriteError(OSError):
    """The output or the response cache cannot be written (full disk, ...): the run stops."""


@dataclass
class BatchSummary:
    """What one :func:`run_batch` call did.

    Attributes:
        stage: the stage label given to :func:`run_batch`.
        output: the output file.
        backend: backend name.
        model: model name.
        total: requests given.
        succeeded: requests whose row now holds an answer (including ``skipped``).
        failed: requests whose row now holds an ``error``.
        skipped: requests already answered in the output before this run (no call made).
        not_attempted: requests left without a row because the budget cap was reached.
        calls: requests sent to the backend in this run (SDK retries not counted).
        cache_hits: requests answered from the response cache in this run.
        prompt_tokens: prompt tokens paid in this run (cache hits excluded).
        completion_tokens: completion tokens paid in this run (cache hits excluded).
        cost_usd: spend of this run; None when some paid call's price is unknown.
        budget_exhausted: the budget cap stopped the run early.
        short: requests answered in this run with fewer samples than ``n`` (rows with ``short_by``).
        batches: provider batches submitted in this run (``mode: batch``).
        elapsed_s: wall time of the run.
        rows: the output row of each request id, this run's or the one already in the output
            (ids left without a row are absent); kept out of :meth:`to_dict`.
    """

    stage: str
    output: str
    backend: str
    model: str
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    not_attempted: int = 0
    calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0
    budget_exhausted: bool = False
    short: int = 0
    batches: int = 0
    elapsed_s: float = 0.0
    rows: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The figures, without :attr:`rows`."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "rows"}

    def line(self) -> str:
        """One human-readable line."""
        text = (f"[{self.stage}] {self.succeeded}/{self.total} answered, {self.failed} failed, "
                f"{self.skipped} already done, {self.cache_hits} cached, {self.calls} calls, "
                f"{self.prompt_tokens}+{self.completion_tokens} tokens, spend {format_usd(self.cost_usd)}")
        if self.short:
            text += f"; {self.short} with fewer samples than asked (see 'warning' in their rows)"
        if self.budget_exhausted:
            text += f"; budget reached, {self.not_attempted} not attempted"
        return text


def _error_text(err: BaseException, redact: Redactor) -> str:
    message = str(err).strip() or repr(err)
    cause = err.__cause__
    if cause is not None and str(cause) and str(cause) not in message:
        message += f" (caused by {type(cause).__name__}: {cause})"
    return redact.text(f"{type(err).__name__}: {message}")[:MAX_ERROR_CHARS]


def _resolve_cache(config: BackendConfig, output: Path, cache: ResponseCache | None) -> ResponseCache | None:
    if cache is not None:
        return cache
    if config.cache_dir == "off":
        return None
    return ResponseCache(Path(config.cache_dir) if config.cache_dir else output.parent / CACHE_DIR_NAME)


class _Run:
    """State of one batch: output store, cache, accounting, progress."""

    def __init__(self, requests: list[ChatRequest], output: Path, config: BackendConfig, stage: str,
                 cache: ResponseCache | None, backend: Backend | None) -> None:
        self.config = config
        self.stage = stage
        self.requests = requests
        self.store = JsonlStore(output)
        self.cache = cache
        self.backend = backend
        self.redact = Redactor([config.api_key_env] if config.api_key_env else [])
        self.price = price_for(config.model, config.prices)
        self.batch_price = price_for(config.model, config.prices, mode="batch")
        self.budget = Budget(cap_usd=config.budget_usd)
        self.summary = BatchSummary(stage=stage, output=str(output), backend=config.backend,
                                    model=config.model, total=len(requests))
        self.unknown_cost = False
        self.bar = None

    # -- accounting -----------------------------------------------------------------------
    def _cost(self, completion: Completion, batch: bool = False) -> float | None:
        price = self.batch_price if batch else self.price
        if price is None:
            if self.backend is not None and not getattr(self.backend, "priced", True):
                return 0.0
            return None
        return call_cost(completion.prompt_tokens, completion.completion_tokens, price)

    def _row(self, request: ChatRequest, completion: Completion | None, cost: float | None,
             cached: bool, error: str | None) -> dict[str, Any]:
        samples = []
        if completion is not None:
            for sample in completion.samples:
                item = sample.to_dict()
                if request.response_schema is not None:
                    item["parsed"] = parse_json_text(sample.text)
                samples.append(item)
        usage = {"prompt_tokens": completion.prompt_tokens if completion else 0,
                 "completion_tokens": completion.completion_tokens if completion else 0}
        row = {"id": request.id, "samples": samples, "usage": usage, "cost_usd": cost, "cached": cached,
               "backend": self.config.backend, "model": self.config.model, "stage": self.stage,
               "error": error}
        if completion is not None and len(samples) < request.n:  # the server returned fewer than asked
            row["short_by"] = request.n - len(samples)
            row["warning"] = self.redact.text(completion.warning or f"{len(samples)} of {request.n} samples")
        return row

    def record_success(self, request: ChatRequest, completion: Completion, key: str | None,
                       batch_id: str | None = None) -> None:
        """A paid answer: cached, then written (``batch_id``: answered by that provider batch,
        priced at the batch price)."""
        cost = self._cost(completion, batch=batch_id is not None)
        if cost is None:
            self.unknown_cost = True
        self.budget.add(cost)
        self.summary.prompt_tokens += completion.prompt_tokens
        self.summary.completion_tokens += completion.completion_tokens
        if self.cache is not None and key is not None:
            try:
                self.cache.put(key, completion, self.config.model)  # before the row: a kill here costs nothing
            except sqlite3.Error as err:  # e.g. "database or disk is full"
                raise OutputWriteError(f"{self.cache.path}: cannot store an answer in the response cache ({err}); "
                                       "nothing more is sent") from None
        row = self._row(request, completion, cost, cached=False, error=None)
        if batch_id is not None:
            row["batch_id"] = batch_id
        self._append(row)
        self.summary.succeeded += 1
        self.summary.short += "short_by" in row
        self._tick()

    def _append(self, row: dict[str, Any]) -> None:
        try:
            self.store.append(row)
        except OSError as err:  # a full disk, a removed folder: stop at once, say where
            raise OutputWriteError(f"{self.store.path}: cannot write the row of {row['id']!r} ({err.strerror or err}); "
                                   "nothing more is sent, and the answers paid so far are in the response "
                                   "cache: a rerun writes them without paying again") from None

    def record_cached(self, request: ChatRequest, completion: Completion) -> None:
        row = self._row(request, completion, 0.0, cached=True, error=None)
        self._append(row)
        self.summary.cache_hits += 1
        self.summary.succeeded += 1
        self.summary.short += "short_by" in row
        self._tick()

    def record_failure(self, request: ChatRequest, err: BaseException) -> None:
        self._append(self._row(request, None, None, cached=False, error=_error_text(err, self.redact)))
        self.summary.failed += 1
        self._tick()

    # -- progress -------------------------------------------------------------------------
    def open_bar(self) -> None:
        """Show the bar (once the backend is ready: a setup error stays one line), starting from
        the items already done."""
        if not self.config.progress or self.bar is not None:
            return
        from tqdm.auto import tqdm

        done = self.summary.succeeded + self.summary.failed
        self.bar = tqdm(total=self.summary.total, initial=done, desc=self.stage, unit="req",
                        dynamic_ncols=True, smoothing=0.1)
        self._tick(advance=False)

    def _tick(self, advance: bool = True) -> None:
        if self.bar is None:
            return
        if advance:
            self.bar.update(1)
        spend = None if self.unknown_cost else self.budget.spent_usd
        self.bar.set_postfix_str(f"fail={self.summary.failed} cache={self.summary.cache_hits} "
                                 f"spend={format_usd(spend)}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.store.close()


async def _run_api(run: _Run, work: ClaimedWork) -> int:
    """Per-request calls, ``concurrency`` workers, rpm/tpm pacing; returns how many started."""
    backend = run.backend
    assert backend is not None
    limiter = RateLimiter(rpm=run.config.rpm, tpm=run.config.tpm)
    started = 0

    async def worker() -> None:
        nonlocal started
        while True:
            if not run.budget.may_start():
                return
            item = await work.next()
            if item is None:
                return
            request, key = item
            estimate = estimate_tokens(request.messages, request.max_tokens, request.n)
            await limiter.acquire(estimate)
            if not run.budget.may_start():  # spend may have grown while waiting
                return
            started += 1
            run.summary.calls += 1
            run.budget.in_flight += 1
            actual = estimate
            try:
                completion = await backend.agenerate(request)
            except Exception as err:  # noqa: BLE001 - every failure becomes the item's error row
                run.budget.in_flight -= 1
                work.release(key)
                run.record_failure(request, err)
            else:
                run.budget.in_flight -= 1
                actual = completion.prompt_tokens + completion.completion_tokens
                run.record_success(request, completion, key)
            finally:
                limiter.settle(estimate, actual)

    workers = min(run.config.concurrency, max(1, len(work)))
    await asyncio.gather(*(worker() for _ in range(workers)))
    return started


async def _run_batched(run: _Run, work: ClaimedWork) -> int:
    """Chunks of ``batch_size`` handed to the engine in a worker thread; returns how many started."""
    backend = run.backend
    assert backend is not None
    size = max(1, run.config.batch_size)
    started = 0
    while run.budget.may_start():
        chunk = await work.take(size)
        if not chunk:
            break
        started += len(chunk)
        run.summary.calls += len(chunk)
        requests = [request for request, _ in chunk]
        try:
            results = await asyncio.to_thread(backend.generate_batch, requests)
            if len(results) != len(requests):
                raise RuntimeError(f"backend returned {len(results)} results for {len(requests)} requests")
        except Exception as err:  # noqa: BLE001
            results = [err] * len(requests)
        for (request, key), result in zip(chunk, results):
            if isinstance(result, BaseException):
                work.release(key)
                run.record_failure(request, result)
            else:
                run.record_success(request, result, key)
    return started


async def _call_backend(run: _Run, work: ClaimedWork) -> int:
    """Send the claimed requests through the run's backend (built here unless given); returns
    how many were sent."""
    if run.config.mode == "batch":  # the provider's batch API; failed items may come back here
        from mede2_plugin.client.provider_batch import run_provider_batches

        return await run_provider_batches(run, work, interactive=lambda: _call_interactive(run, work))
    return await _call_interactive(run, work)


async def _call_interactive(run: _Run, work: ClaimedWork) -> int:
    owns_backend = run.backend is None
    if run.backend is None:
        run.backend = create_backend(run.config)
    run.open_bar()
    try:
        if getattr(run.backend, "batched", False):
            return await _run_batched(run, work)
        return await _run_api(run, work)
    finally:
        if owns_backend:
            aclose = getattr(run.backend, "aclose", None)
            if aclose is not None:
                await aclose()
            else:
                run.backend.close()


def _check_budget_prices(run: _Run) -> None:
    """A budget needs the price of every kind of call the run may make (batch, interactive)."""
    config = run.config
    if config.budget_usd is None or config.backend not in ("openai", "gemini"):
        return
    if run.price is None and (config.mode == "interactive" or config.batch_retry == "interactive"):
        raise ValueError(f"budget_usd is set but model {config.model!r} has no price; add "
                         f"prices: {{{config.model!r}: {{input: USD_per_Mtok, output: USD_per_Mtok}}}}")
    if config.mode == "batch" and run.batch_price is None:
        raise ValueError(f"budget_usd is set but model {config.model!r} has no batch price; add "
                         f"prices: {{{config.model!r}: {{input: ..., output: ..., batch: {{input: ..., output: ...}}}}}}")


def _check_ids(requests: list[ChatRequest]) -> None:
    seen: set[str] = set()
    for request in requests:
        if request.id in seen:
            raise ValueError(f"duplicate request id {request.id!r}: ids must be unique within a batch")
        seen.add(request.id)


async def arun_batch(requests: Iterable[ChatRequest], output: str | Path, config: BackendConfig,
                     stage: str = "batch", cache: ResponseCache | None = None,
                     backend: Backend | None = None) -> BatchSummary:
    """Async form of :func:`run_batch` (for callers already inside an event loop)."""
    began = time.monotonic()
    output = Path(output)
    requests = list(requests)
    _check_ids(requests)
    own_cache = cache is None
    cache = _resolve_cache(config, output, cache)
    run = _Run(requests, output, config, stage, cache, backend)
    try:
        _check_budget_prices(run)
        pending: list[ChatRequest] = []
        for request in requests:
            previous = run.store.get(request.id)
            if previous is not None and previous.get("error") is None:
                run.summary.skipped += 1
                run.summary.succeeded += 1
            else:
                pending.append(request)
        async with ClaimedWork(cache, config.cache_lease_s, run.record_cached) as work:
            for request in pending:
                key = None
                if cache is not None:
                    try:
                        key = cache_key(config, request)
                    except (OSError, ValueError) as err:  # e.g. a missing image: this item fails, not the batch
                        run.record_failure(request, err)
                        continue
                work.add(request, key)  # answered from the cache, claimed, or waiting for another run
            queued = len(work)
            if queued:
                started = await _call_backend(run, work)
                run.summary.not_attempted = queued - started - work.answered_elsewhere
                run.summary.budget_exhausted = run.budget.exhausted and run.summary.not_attempted > 0
        run.summary.cost_usd = None if run.unknown_cost else round(run.budget.spent_usd, 10)
        run.summary.rows = {r.id: row for r in requests if (row := run.store.get(r.id)) is not None}
    finally:
        run.close()
        if own_cache and cache is not None:
            cache.close()
    run.summary.elapsed_s = round(time.monotonic() - began, 3)
    return run.summary


def run_batch(requests: Iterable[ChatRequest], output: str | Path, config: BackendConfig,
              stage: str = "batch", cache: ResponseCache | None = None,
              backend: Backend | None = None) -> BatchSummary:
    """Answer every request once, appending one row per id to ``output``; resumable and cached.

    Args:
        requests: the chat requests; ids must be unique.
        output: JSONL results file (created if missing). Ids already answered there are skipped;
            ids whose row holds an ``error`` are tried again.
        config: backend, pacing, retries, prices, budget and cache settings.
        stage: label for the progress bar, the rows' ``stage`` field and the summary.
        cache: a response cache to use instead of the one ``config.cache_dir`` names.
        backend: an already built backend (kept open afterwards) instead of building one.

    Returns:
        A :class:`BatchSummary` of this run.
    """
    coroutine = arun_batch(requests, output, config, stage=stage, cache=cache, backend=backend)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    result: dict[str, Any] = {}

    def target() -> None:  # called from inside a running loop (notebooks): use a fresh thread
        try:
            result["value"] = asyncio.run(coroutine)
        except BaseException as err:  # noqa: BLE001
            result["error"] = err

    thread = threading.Thread(target=target, name="mede2-run-batch")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def usage_totals(output: str | Path) -> dict[str, Any]:
    """Token and cost totals over every row of a results file (cost None if any is unknown)."""
    totals: dict[str, Any] = {"rows": 0, "answered": 0, "failed": 0, "prompt_tokens": 0,
                              "completion_tokens": 0, "cost_usd": 0.0}
    for row in latest_records(output).values():
        totals["rows"] += 1
        totals["answered" if row.get("error") is None else "failed"] += 1
        usage = row.get("usage") or {}
        if not row.get("cached"):
            totals["prompt_tokens"] += usage.get("prompt_tokens", 0)
            totals["completion_tokens"] += usage.get("completion_tokens", 0)
        if row.get("error") is None:
            if row.get("cost_usd") is None or totals["cost_usd"] is None:
                totals["cost_usd"] = None
            else:
                totals["cost_usd"] += row["cost_usd"]
    return totals
