"""A small Gemini API server for tests and the demo: ``POST /v1beta/models/{model}:generateContent``.

It serves only the path the real service serves for the API version our backend asks for
(``BackendConfig.gemini_api_version``, ``v1beta`` unless ``api_version`` says otherwise); any other
path gets a 404 naming it, so a client that drifts to another version fails here as it would there.
google-genai sends requests there when the client is built with
``HttpOptions(base_url=server.base_url, api_version=...)`` (and any API key). ``reply(body)`` gets
the request JSON (``contents``, ``systemInstruction``, ``generationConfig``, plus ``model`` taken
from the path) and returns the text, or ``(text, thought)``; a thought is sent as a
``thought: true`` part when the request asks for thoughts (``thinkingConfig.includeThoughts``).
``candidateCount`` gives that many candidates. Usage counts words. Faults: see :mod:`mede2_plugin.testing.server`.

Batch mode (see :mod:`.batches` for timing, item faults and expiry), inline requests as
google-genai's ``client.batches`` sends them: ``POST /{version}/models/{model}:batchGenerateContent``
with ``{"batch": {"displayName", "inputConfig": {"requests": {"requests": [{"request", "metadata"}]}}}}``,
``GET /{version}/batches[/{id}]``, ``POST /{version}/batches/{id}:cancel``, ``DELETE
/{version}/batches/{id}``; each answered as the service does, an ``Operation`` whose ``metadata``
holds the batch (``state`` ``BATCH_STATE_PENDING`` ... ``BATCH_STATE_SUCCEEDED``) and, once
finished, ``output.inlinedResponses.inlinedResponses`` in request order (``{"response",
"metadata"}`` or ``{"error": {"code", "message"}, "metadata"}``). An expired batch
(``BATCH_STATE_EXPIRED``) has no output, as on the service. Hold kinds: ``create``, ``get``,
``download`` (a look at a finished batch: the results), ``cancel``, ``list_batches``.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from mede2_plugin.client.config import BackendConfig
from mede2_plugin.testing.batches import (
    CANCELLED,
    COMPLETED,
    EXPIRED,
    FAILED,
    FakeBatch,
)
from mede2_plugin.testing.server import FakeServer, Fault

__all__ = ["DEFAULT_API_VERSION", "FakeGeminiServer", "Fault", "prompt_text"]

DEFAULT_API_VERSION: str = BackendConfig.gemini_api_version  # the dataclass default: what the backend asks for
_STATUS = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
           503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
_BATCH_STATE = {COMPLETED: "BATCH_STATE_SUCCEEDED", EXPIRED: "BATCH_STATE_EXPIRED",
                CANCELLED: "BATCH_STATE_CANCELLED", FAILED: "BATCH_STATE_FAILED"}


def content_texts(body: dict[str, Any]) -> list[str]:
    """The text of the system instruction (when there is one) and of each content of a
    generateContent request."""
    system = body.get("systemInstruction") or body.get("system_instruction")
    contents = ([system] if system else []) + list(body.get("contents", []))
    return ["\n".join(p.get("text", "") for p in content.get("parts", []) if "text" in p) for content in contents]


def prompt_text(body: dict[str, Any]) -> str:
    """All text of a generateContent request (system instruction first), joined by newlines."""
    return "\n".join(text for text in content_texts(body) if text)


def image_data_urls(body: dict[str, Any]) -> list[str]:
    """The inline images of a request as data URLs (google-genai sends URL-safe base64)."""
    urls = []
    for image in inline_images(body):
        data = image["data"] or ""
        raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        urls.append(f"data:{image['mimeType']};base64,{base64.b64encode(raw).decode('ascii')}")
    return urls


def inline_images(body: dict[str, Any]) -> list[dict[str, str]]:
    """The inline image parts (``{"mimeType", "data"}``) of a generateContent request.

    Field names are read as the service reads them (proto3 JSON takes lowerCamelCase and the
    original snake_case alike: google-genai 3.x sends ``inlineData.mime_type``).
    """
    found = []
    for content in body.get("contents", []):
        for part in content.get("parts", []):
            data = part.get("inlineData") or part.get("inline_data")
            if data:
                found.append({"mimeType": data.get("mimeType", data.get("mime_type")), "data": data.get("data")})
    return found


class FakeGeminiServer(FakeServer):
    """Gemini ``generateContent`` wire format; give ``base_url`` to ``genai.types.HttpOptions``.

    Args:
        api_version: the only version served (default: :data:`DEFAULT_API_VERSION`, ``v1beta``).
        **kwargs: see :class:`~mede2_plugin.testing.server.FakeServer`.
    """

    def __init__(self, *args: Any, api_version: str = DEFAULT_API_VERSION, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.api_version = api_version
        self._path = re.compile(rf"^/{re.escape(api_version)}/models/(?P<model>[^/:]+):generateContent(?:\?.*)?$")

    @property
    def base_url(self) -> str:
        return self.root_url

    def accepts(self, path: str) -> bool:
        return bool(self._path.match(path))

    def normalise(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        match = self._path.match(path)
        return {**body, "model": match.group("model") if match else None}

    def answer(self, body: dict[str, Any], call_index: int) -> dict[str, Any]:
        config = body.get("generationConfig") or {}
        count = min(int(config.get("candidateCount") or 1), self.max_samples or 1 << 30)
        thinking = config.get("thinkingConfig") or config.get("thinking_config") or {}
        include_thoughts = bool(thinking.get("includeThoughts") or thinking.get("include_thoughts"))
        candidates = []
        output_tokens = thought_tokens = 0
        for index in range(count):
            text, thought = self._sample(body, index)
            parts: list[dict[str, Any]] = []
            if thought is not None:
                thought_tokens += self.tokens(thought)
                if include_thoughts:
                    parts.append({"text": thought, "thought": True})
            parts.append({"text": text})
            output_tokens += self.tokens(text)
            candidates.append({"content": {"role": "model", "parts": parts}, "finishReason": "STOP",
                               "index": index})
        prompt_tokens = self.prompt_usage(content_texts(body), image_data_urls(body), body.get("model") or "", "gemini",
                                          258)
        usage = {"promptTokenCount": prompt_tokens, "candidatesTokenCount": output_tokens,
                 "totalTokenCount": prompt_tokens + output_tokens + thought_tokens}
        if thought_tokens:
            usage["thoughtsTokenCount"] = thought_tokens
        return {"candidates": candidates, "usageMetadata": usage, "modelVersion": body.get("model"),
                "responseId": f"fake-{call_index}"}

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return {"error": {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}}

    # -- batch mode -----------------------------------------------------------------------
    def routes(self) -> list[tuple[str, str, Callable[..., None]]]:
        version = re.escape(self.api_version)
        return [("POST", rf"/{version}/models/(?P<model>[^/:]+):batchGenerateContent", self._create_batch),
                ("GET", rf"/{version}/batches", self._list_batches),
                ("GET", rf"/{version}/batches/(?P<id>[^/:]+)", self._get_batch),
                ("POST", rf"/{version}/batches/(?P<id>[^/:]+):cancel", self._cancel_batch),
                ("DELETE", rf"/{version}/batches/(?P<id>[^/:]+)", self._delete_batch)]

    def _missing(self, object_id: str) -> tuple[int, bytes, str]:
        return self.json_reply(404, self.error_body(404, f"Batch batches/{object_id} not found."))

    def _create_batch(self, handler: Any, raw: bytes, model: str) -> None:
        batch_body = (json.loads(raw or b"{}").get("batch") or {})

        def work() -> tuple[int, bytes, str]:
            entries = (((batch_body.get("inputConfig") or {}).get("requests") or {}).get("requests")) or []
            if not entries:
                return self.json_reply(400, self.error_body(400, "batch.inputConfig.requests is required"))
            items = []
            for index, entry in enumerate(entries):
                key = str((entry.get("metadata") or {}).get("key", index))
                items.append((key, {**entry.get("request", {}), "model": model, "_metadata": entry.get("metadata")}))
            batch = self.book.create(items, {"displayName": batch_body.get("displayName"), "model": model},
                                     prefix="")
            return self.json_reply(200, self._operation(batch))

        self.serve(handler, "create", "", work)

    def _list_batches(self, handler: Any, raw: bytes) -> None:
        self.serve(handler, "list_batches", "", lambda: self.json_reply(200, {
            "operations": [self._operation(self.book.refresh(b)) for b in reversed(list(self.book.batches.values()))
                           if not b.labels.get("deleted")]}))

    def _get_batch(self, handler: Any, raw: bytes, id: str) -> None:  # noqa: A002
        batch = self.book.batches.get(id)
        batch = None if batch is None or batch.labels.get("deleted") else batch
        if batch is not None:
            self.book.refresh(batch)
        kind = "download" if batch is not None and batch.done else "get"
        self.serve(handler, kind, id, lambda: self.json_reply(200, self._operation(batch)) if batch else self._missing(id))

    def _cancel_batch(self, handler: Any, raw: bytes, id: str) -> None:  # noqa: A002
        batch = self.book.batches.get(id)
        self.serve(handler, "cancel", id, lambda: (self.book.cancel(batch), self.json_reply(200, {}))[1] if batch
                   else self._missing(id))

    def _delete_batch(self, handler: Any, raw: bytes, id: str) -> None:  # noqa: A002
        batch = self.book.batches.get(id)

        def work() -> tuple[int, bytes, str]:
            if batch is None or batch.labels.get("deleted"):
                return self._missing(id)
            batch.labels["deleted"] = True  # kept in the book: tests count every batch ever created
            return self.json_reply(200, {})

        self.serve(handler, "delete", id, work)

    @staticmethod
    def _time(seconds: int | None) -> str | None:
        return None if seconds is None else datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _operation(self, batch: FakeBatch) -> dict[str, Any]:
        total, completed, failed = batch.counts()
        metadata: dict[str, Any] = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
            "name": f"batches/{batch.id}", "model": f"models/{batch.labels.get('model')}",
            "displayName": batch.labels.get("displayName"), "createTime": self._time(batch.created_at),
            "updateTime": self._time(batch.finished_at or batch.created_at),
            "state": _BATCH_STATE.get(batch.state, "BATCH_STATE_RUNNING"),
            "batchStats": {"requestCount": str(total), "successfulRequestCount": str(completed),
                           "failedRequestCount": str(failed), "pendingRequestCount": str(0 if batch.done else total)}}
        operation: dict[str, Any] = {"name": f"batches/{batch.id}", "metadata": metadata}
        if batch.done:
            metadata["endTime"] = self._time(batch.finished_at)
            operation["done"] = True
        if batch.state in (COMPLETED, CANCELLED):
            responses = []
            for (key, body), result in zip(batch.items, batch.results or []):
                if result.expired:
                    continue
                entry: dict[str, Any] = {"metadata": body.get("_metadata")} if body.get("_metadata") else {}
                if result.status == 200:
                    entry["response"] = result.response
                else:
                    entry["error"] = (result.error or {}).get("error", {"code": result.status})
                responses.append(entry)
            output = {"inlinedResponses": {"inlinedResponses": responses}}
            metadata["output"] = output
            operation["response"] = {"@type": "type.googleapis.com/google.ai.generativelanguage.v1main."
                                              "GenerateContentBatchOutput", **output}
        return operation
