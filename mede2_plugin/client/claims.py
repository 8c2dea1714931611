"""The requests of one run, claimed in the response cache so that runs sharing it pay once.

:func:`~mede2_plugin.client.run_batch` hands each request that is not answered yet to
:meth:`ClaimedWork.add`: a key found in the cache is answered at once, a key nobody holds is
claimed by this run and becomes *ready* (this run makes the call), a key another run holds
(its call is in flight) *waits*. :meth:`ClaimedWork.next` gives the ready requests first; once
none is left it polls the waiting keys (0.2 s, growing to 2 s) until each is answered by the
other run (recorded as a cache hit, nothing paid) or its claim is given up or taken over (the
other run failed or was killed), which makes it ready here. While the work is open
(``async with``), a heartbeat renews this run's claims every ``lease_s / 3`` seconds; closing it
gives up the claims of requests this run did not answer (budget reached, interrupted).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any

from mede2_plugin.client.backends.base import Completion
from mede2_plugin.client.cache import BUSY, CLAIMED, HIT, ResponseCache, new_owner
from mede2_plugin.client.config import ChatRequest

Item = tuple[ChatRequest, "str | None"]


class ClaimedWork:
    """Ready and waiting requests of one run (see the module docstring).

    Args:
        cache: the response cache (None: no cache, every request is ready).
        lease_s: lease of a claim; renewed every third of it while the work is open.
        on_cached: called with ``(request, completion)`` for a request answered from the cache.
        poll_s: first wait between two polls of the waiting keys (grows 1.5x, at most ``max_poll_s``).
    """

    def __init__(self, cache: ResponseCache | None, lease_s: float,
                 on_cached: Callable[[ChatRequest, Completion], None],
                 poll_s: float = 0.2, max_poll_s: float = 2.0) -> None:
        self.cache = cache
        self.lease_s = lease_s
        self.on_cached = on_cached
        self.poll_s = poll_s
        self.max_poll_s = max_poll_s
        self.owner = new_owner()
        self.ready: deque[Item] = deque()
        self.waiting: list[Item] = []
        self.answered_elsewhere = 0  #: waiting requests another run answered
        self._lock: asyncio.Lock | None = None
        self._heartbeat: asyncio.Task[Any] | None = None

    def add(self, request: ChatRequest, key: str | None) -> str:
        """Answer ``request`` from the cache (``HIT``), or claim its key (``CLAIMED``: ready), or
        queue it (``BUSY``: waiting); returns which."""
        if self.cache is None or key is None:
            self.ready.append((request, key))
            return CLAIMED
        state, hit = self.cache.claim(key, self.owner, self.lease_s)
        if state == HIT:
            assert hit is not None
            self.on_cached(request, hit)
        elif state == BUSY:
            self.waiting.append((request, key))
        else:
            self.ready.append((request, key))
        return state

    def __len__(self) -> int:
        """Requests neither answered nor handed out yet."""
        return len(self.ready) + len(self.waiting)

    async def next(self) -> Item | None:
        """The next request to call: a ready one, else (after waiting) a freed one; None when done."""
        batch = await self.take(1)
        return batch[0] if batch else None

    async def take(self, size: int) -> list[Item]:
        """Up to ``size`` requests to call; waits only while none is ready but some are waiting."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            delay = self.poll_s
            while not self.ready and self.waiting:
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, self.max_poll_s)
                self._poll()
            return [self.ready.popleft() for _ in range(min(size, len(self.ready)))]

    def take_ready(self) -> list[Item]:
        """Every request ready now, after one look at the waiting ones (never waits)."""
        if self.waiting:
            self._poll()
        ready, self.ready = list(self.ready), deque()
        return ready

    def _poll(self) -> None:
        waiting, self.waiting = self.waiting, []
        for request, key in waiting:
            if self.add(request, key) == HIT:
                self.answered_elsewhere += 1

    def release(self, key: str | None) -> None:
        """Give up the claim of a request whose call failed, so a waiting run may try it."""
        if self.cache is not None and key is not None:
            self.cache.release(self.owner, key)

    async def _renew(self) -> None:
        assert self.cache is not None
        while True:
            await asyncio.sleep(self.lease_s / 3)
            self.cache.renew(self.owner, self.lease_s)

    async def __aenter__(self) -> ClaimedWork:
        if self.cache is not None:
            self._heartbeat = asyncio.create_task(self._renew())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        if self.cache is not None:
            self.cache.release(self.owner)
