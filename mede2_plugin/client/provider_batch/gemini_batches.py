"""Gemini batch mode through ``google-genai``'s ``client.aio.batches``, with inline requests.

Each request becomes an ``InlinedRequest`` holding exactly what the interactive backend sends
(:func:`to_contents` and :meth:`GeminiBackend.generation_config`: system instruction, images as
inline bytes, JSON schema, thinking budget, ``candidate_count`` for ``n``) and
``metadata={"key": request id}``; the batch's display name is the journal label. Results are the
batch's ``inlined_responses`` (a response or an error per request, matched by the metadata key).
An expired, failed or cancelled batch has no results for the items it did not answer. Inline
requests may total 20 MB per batch (19 MB used); larger work is split into several batches.
Reads (get, list) are retried like interactive calls; ``create`` is sent once.
"""

from __future__ import annotations

import asyncio
from typing import Any

from google.genai import types

from mede2_plugin.client.backends.gemini_backend import (
    GeminiBackend,
    completion_from_response,
    to_contents,
)
from mede2_plugin.client.config import BackendConfig, ChatRequest
from mede2_plugin.client.provider_batch.base import (
    LIST_MARGIN_S,
    BatchResults,
    BatchStatus,
    ProviderBatches,
)

TERMINAL = ("JOB_STATE_SUCCEEDED", "JOB_STATE_PARTIALLY_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED",
            "JOB_STATE_EXPIRED")


def _state(job: types.BatchJob) -> str:
    state = job.state
    return str(getattr(state, "value", state) or "JOB_STATE_UNSPECIFIED")


class GeminiBatches(ProviderBatches):
    uploads = False
    max_requests = 100_000
    max_bytes = 19_000_000

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self.backend = GeminiBackend(config)

    async def encode(self, request: ChatRequest) -> tuple[types.InlinedRequest, int]:
        system, contents = await asyncio.to_thread(to_contents, request.messages)
        entry = types.InlinedRequest(contents=contents, metadata={"key": request.id},
                                     config=self.backend.generation_config(request, system, request.n))
        return entry, len(entry.model_dump_json(exclude_none=True).encode("utf-8"))

    async def _read(self, method: Any, **kwargs: Any) -> Any:
        return await self.backend.retrying()(method, **kwargs)

    async def create(self, label: str, source: list[types.InlinedRequest]) -> str:
        job = await self.backend.client.aio.batches.create(
            model=self.config.model, src=source, config=types.CreateBatchJobConfig(display_name=label))
        return str(job.name)

    async def find_batch(self, label: str, since: float) -> str | None:
        pager = await self._read(self.backend.client.aio.batches.list, config=types.ListBatchJobsConfig(page_size=100))
        async for job in pager:
            if job.display_name == label:
                return str(job.name)
            if job.create_time is not None and job.create_time.timestamp() < since - LIST_MARGIN_S:
                return None
        return None

    async def status(self, batch_id: str) -> BatchStatus:
        job = await self._read(self.backend.client.aio.batches.get, name=batch_id)
        return BatchStatus(state=_state(job), terminal=_state(job) in TERMINAL)

    async def results(self, batch_id: str) -> BatchResults:
        job = await self._read(self.backend.client.aio.batches.get, name=batch_id)
        results = BatchResults(missing=f"batch {batch_id} ended {_state(job)} without a result for it")
        if job.error is not None:
            results.missing = f"batch {batch_id} ended {_state(job)} ({job.error.message})"
        for item in (job.dest.inlined_responses if job.dest else None) or []:
            request_id = str((item.metadata or {}).get("key"))
            if item.response is not None and item.response.candidates:
                results.completions[request_id] = completion_from_response(item.response)
            elif item.error is not None:
                results.errors[request_id] = f"HTTP {item.error.code}: {item.error.message}"
            else:
                feedback = getattr(item.response, "prompt_feedback", None)
                results.errors[request_id] = f"Gemini returned no candidates (prompt feedback: {feedback})"
        return results

    async def aclose(self) -> None:
        await self.backend.aclose()
