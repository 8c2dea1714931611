"""Pacing: requests-per-minute and tokens-per-minute limits for one asyncio event loop.

Concurrency itself is bounded by the number of workers :func:`run_batch` starts. The request
limit spaces starts evenly (one every ``60 / rpm`` seconds, no burst), so a provider's per-minute
window is never exceeded. The token limit is a bucket holding one minute of tokens, refilled
continuously; a request takes its estimate up front and :meth:`RateLimiter.settle` corrects the
bucket to the real usage once the response arrives.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from mede2_plugin.core.media import image_url


class RateLimiter:
    """Async rpm/tpm limiter; ``None`` limits are not enforced."""

    def __init__(self, rpm: float | None = None, tpm: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self._clock = clock
        self._next_start = 0.0
        self._tokens = float(tpm) if tpm else 0.0
        self._tokens_at = clock()
        self._lock: asyncio.Lock | None = None

    def _refill(self) -> None:
        now = self._clock()
        if self.tpm:
            self._tokens = min(float(self.tpm), self._tokens + (now - self._tokens_at) * self.tpm / 60.0)
        self._tokens_at = now

    async def acquire(self, tokens: int = 0) -> None:
        """Wait until one more request of about ``tokens`` tokens may start."""
        if not self.rpm and not self.tpm:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # FIFO: waiters start in arrival order
            if self.rpm:
                wait = self._next_start - self._clock()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._next_start = max(self._clock(), self._next_start) + 60.0 / self.rpm
            if self.tpm:
                need = min(float(tokens), float(self.tpm))  # a huge request waits for a full bucket
                self._refill()
                while self._tokens < need:
                    await asyncio.sleep((need - self._tokens) * 60.0 / self.tpm)
                    self._refill()
                self._tokens -= tokens

    def settle(self, estimated: int, actual: int) -> None:
        """Give back (or take) the difference between a request's estimate and its real usage."""
        if self.tpm:
            self._refill()
            self._tokens = min(float(self.tpm), self._tokens + estimated - actual)


def estimate_tokens(messages: list[dict[str, Any]], max_tokens: int | None, n: int,
                    image_tokens: int = 768, default_output: int = 512) -> int:
    """A rough upper estimate of a request's tokens: text/4, a fixed cost per image, the outputs."""
    chars = 0
    images = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
            continue
        for part in content or []:
            if image_url(part) is not None:
                images += 1
            else:
                chars += len(part.get("text", ""))
    return chars // 4 + images * image_tokens + (max_tokens or default_output) * n
