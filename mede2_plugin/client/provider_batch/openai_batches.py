"""The OpenAI Batch API through the ``openai`` SDK: a JSONL input file, a batch, result files.

Each request becomes one line ``{"custom_id": id, "method": "POST", "url":
"/v1/chat/completions", "body"}`` whose body is exactly what the interactive backend sends
(:meth:`OpenAIBackend.request_body`: same images, schema and extra fields). The file is uploaded
with ``purpose="batch"`` under the name ``<label>.jsonl``; the batch is created for
``/v1/chat/completions`` with the 24 h window and ``metadata={"mede2_label": label}``. Results are
read from the batch's output file (``status_code`` 200: the chat completion) and error file
(other status codes, and ``batch_expired`` / ``batch_cancelled`` items). Limits: 50,000 requests
and 200 MB per input file (190 MB used, leaving room for the multipart envelope).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai

from mede2_plugin.client.backends.openai_backend import (
    OpenAIBackend,
    completion_from_response,
)
from mede2_plugin.client.config import BackendConfig, ChatRequest
from mede2_plugin.client.provider_batch.base import (
    LIST_MARGIN_S,
    BatchResults,
    BatchStatus,
    ProviderBatches,
)

ENDPOINT = "/v1/chat/completions"
TERMINAL = ("completed", "failed", "expired", "cancelled")
LABEL_KEY = "mede2_label"


class OpenAIBatches(ProviderBatches):
    uploads = True
    max_requests = 50_000
    max_bytes = 190_000_000

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self.backend = OpenAIBackend(config)

    @property
    def client(self) -> openai.AsyncOpenAI:
        return self.backend.client

    async def encode(self, request: ChatRequest) -> tuple[str, int]:
        body = await asyncio.to_thread(self.backend.request_body, request)
        line = json.dumps({"custom_id": request.id, "method": "POST", "url": ENDPOINT, "body": body},
                          ensure_ascii=False) + "\n"
        return line, len(line.encode("utf-8"))

    async def upload(self, label: str, entries: list[str]) -> str:
        data = "".join(entries).encode("utf-8")
        uploaded = await self.client.files.create(file=(f"{label}.jsonl", data, "application/jsonl"), purpose="batch")
        return uploaded.id

    async def find_upload(self, label: str, since: float) -> str | None:
        async for item in self.client.files.list(purpose="batch"):
            if item.filename == f"{label}.jsonl":
                return item.id
            if item.created_at < since - LIST_MARGIN_S:  # newest first: older ones cannot be ours
                return None
        return None

    async def create(self, label: str, source: str) -> str:
        batch = await self.client.with_options(max_retries=0).batches.create(
            input_file_id=source, endpoint=ENDPOINT, completion_window="24h", metadata={LABEL_KEY: label})
        return batch.id

    async def find_batch(self, label: str, since: float) -> str | None:
        async for batch in self.client.batches.list(limit=100):
            if (batch.metadata or {}).get(LABEL_KEY) == label:
                return batch.id
            if batch.created_at < since - LIST_MARGIN_S:
                return None
        return None

    async def status(self, batch_id: str) -> BatchStatus:
        batch = await self.client.batches.retrieve(batch_id)
        counts = batch.request_counts
        return BatchStatus(state=batch.status, terminal=batch.status in TERMINAL,
                           done=(counts.completed + counts.failed) if counts else None,
                           total=counts.total if counts else None)

    async def results(self, batch_id: str) -> BatchResults:
        batch = await self.client.batches.retrieve(batch_id)
        results = BatchResults(missing=f"batch {batch_id} ended {batch.status} without a result for it")
        if batch.status == "failed" and batch.errors and batch.errors.data:
            reasons = "; ".join(f"{e.code}: {e.message}" for e in batch.errors.data[:3])
            results.missing = f"batch {batch_id} failed ({reasons})"
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                content = await self.client.files.content(file_id)
                for line in content.text.splitlines():
                    if line.strip():
                        self._read_line(json.loads(line), results)
        return results

    @staticmethod
    def _read_line(line: dict[str, Any], results: BatchResults) -> None:
        request_id = line.get("custom_id")
        response = line.get("response") or {}
        if response.get("status_code") == 200:
            try:
                results.completions[request_id] = completion_from_response(response.get("body") or {})
                return
            except ValueError as err:  # pydantic's ValidationError is one
                results.errors[request_id] = f"unreadable batch result: {str(err)[:200]}"
                return
        error = line.get("error") or (response.get("body") or {}).get("error") or {}
        status = f"HTTP {response['status_code']}: " if response.get("status_code") else ""
        results.errors[request_id] = f"{status}{error.get('code') or ''} {error.get('message') or ''}".strip()

    async def aclose(self) -> None:
        await self.backend.aclose()
