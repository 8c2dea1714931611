"""A small OpenAI-compatible server for tests and the demo: ``POST /v1/chat/completions``.

>>> from mede2_plugin.testing import FakeOpenAIServer, Fault
>>> with FakeOpenAIServer(reply=lambda body: "The answer is \\\\boxed{A}",
...                       faults=[Fault.rate_limit(retry_after=0.2), None, "500"]) as server:
...     config = BackendConfig(backend="openai", model="fake", base_url=server.base_url)
...     ...                                    # server.calls, server.call_count, server.answered_count

``reply(body)`` gets the request JSON (``model``, ``messages``, ``n``, ...) and returns the text, or
``(text, reasoning)`` to send ``reasoning_content`` as reasoning servers do, or a dict: a literal
choice as a provider returns it (``{"message": {"role": "assistant", "content": None,
"reasoning": "..."}, "finish_reason": "length"}``), sent as it is; it is called once per choice
(``n``). Usage counts words. Faults: see :mod:`mede2_plugin.testing.server`.

Batch API (see :mod:`.batches` for timing, item faults and expiry): ``POST /v1/files`` (multipart
upload), ``GET /v1/files[/{id}[/content]]``, ``DELETE /v1/files/{id}``, ``POST /v1/batches``,
``GET /v1/batches[/{id}]``, ``POST /v1/batches/{id}/cancel``. The input file's lines are
``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}``; a finished batch has an
output file of ``{"id", "custom_id", "response": {"status_code": 200, "request_id", "body"},
"error": null}`` lines and an error file with the failed items (``status_code`` 4xx/5xx) and the
expired or cancelled ones (``"response": null, "error": {"code": "batch_expired" | "batch_cancelled"}``),
as OpenAI writes them. A file with a repeated ``custom_id`` fails validation. Hold kinds:
``upload``, ``create``, ``get``, ``download``, ``cancel``, ``list_files``, ``list_batches``.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from mede2_plugin.testing.batches import (
    CANCELLED,
    COMPLETED,
    EXPIRED,
    FAILED,
    FakeBatch,
    FakeFile,
)
from mede2_plugin.testing.server import FakeServer, Fault

__all__ = ["FakeOpenAIServer", "Fault", "prompt_text"]


def message_texts(body: dict[str, Any]) -> list[str]:
    """The text of each message of an OpenAI chat request (images left out)."""
    texts = []
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        else:
            texts.append("\n".join(p.get("text", "") for p in content or [] if p.get("type") == "text"))
    return texts


def prompt_text(body: dict[str, Any]) -> str:
    """All text of an OpenAI chat request's messages, joined by newlines (images left out)."""
    return "\n".join(text for text in message_texts(body) if text)


def image_urls(body: dict[str, Any]) -> list[str]:
    """The image URLs of an OpenAI chat request, in order."""
    urls = []
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, list):
            urls.extend(p["image_url"]["url"] for p in content if p.get("type") == "image_url")
    return urls


class FakeOpenAIServer(FakeServer):
    """OpenAI chat-completions wire format; ``base_url`` ends in ``/v1`` (give it to the SDK)."""

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def accepts(self, path: str) -> bool:
        return path.rstrip("/").endswith("/chat/completions")

    def _handle_get(self, handler: Any) -> None:
        if handler.path.rstrip("/").endswith("/models"):
            self._send_json(handler, 200, {"object": "list", "data": [
                {"id": "fake", "object": "model", "created": 0, "owned_by": "mede2"}]})
            return
        super()._handle_get(handler)

    def answer(self, body: dict[str, Any], call_index: int) -> dict[str, Any]:
        n = min(int(body.get("n") or 1), self.max_samples or 1 << 30)
        choices = []
        completion_tokens = 0
        for index in range(n):
            text, reasoning = self._sample(body, index)
            if isinstance(text, dict):  # a literal choice object, as a provider returns it
                choice = {"index": index, "logprobs": None, "finish_reason": "stop", **text}
                message = choice["message"]
                completion_tokens += self.tokens(message.get("content") or "") + self.tokens(
                    message.get("reasoning_content") or message.get("reasoning") or "")
                choices.append(choice)
                continue
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if reasoning is not None:
                message["reasoning_content"] = reasoning
            completion_tokens += self.tokens(text) + self.tokens(reasoning or "")
            max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
            finish = "length" if max_tokens and self.tokens(text) >= max_tokens else "stop"
            choices.append({"index": index, "message": message, "finish_reason": finish, "logprobs": None})
        prompt_tokens = self.prompt_usage(message_texts(body), image_urls(body), body.get("model") or "", "openai", 64)
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion",
                "created": int(time.time()), "model": body.get("model", "fake"), "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        kinds = {429: "rate_limit_error", 400: "invalid_request_error", 404: "not_found_error"}
        return {"error": {"message": message, "type": kinds.get(status, "server_error"), "code": status}}

    # -- Batch and Files APIs -------------------------------------------------------------
    def routes(self) -> list[tuple[str, str, Callable[..., None]]]:
        return [("POST", r"/v1/files", self._upload), ("GET", r"/v1/files", self._list_files),
                ("GET", r"/v1/files/(?P<id>[^/]+)", self._get_file),
                ("GET", r"/v1/files/(?P<id>[^/]+)/content", self._download),
                ("DELETE", r"/v1/files/(?P<id>[^/]+)", self._delete_file),
                ("POST", r"/v1/batches", self._create_batch), ("GET", r"/v1/batches", self._list_batches),
                ("GET", r"/v1/batches/(?P<id>[^/]+)", self._get_batch),
                ("POST", r"/v1/batches/(?P<id>[^/]+)/cancel", self._cancel_batch)]

    def _missing(self, what: str, object_id: str) -> tuple[int, bytes, str]:
        return self.json_reply(404, self.error_body(404, f"No such {what}: {object_id}"))

    @staticmethod
    def _file_json(record: FakeFile) -> dict[str, Any]:
        return {"id": record.id, "object": "file", "bytes": len(record.data), "created_at": record.created_at,
                "filename": record.filename, "purpose": record.purpose, "status": "processed"}

    def _upload(self, handler: Any, raw: bytes) -> None:
        header = f"Content-Type: {handler.headers.get('Content-Type')}\r\n\r\n".encode("latin-1")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + raw)
        fields: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields[name] = (part.get_filename(), part.get_payload(decode=True))

        def work() -> tuple[int, bytes, str]:
            filename, data = fields.get("file", (None, None))
            purpose = (fields.get("purpose", (None, b""))[1] or b"").decode()
            if data is None or not purpose:
                return self.json_reply(400, self.error_body(400, "'file' and 'purpose' are required"))
            return self.json_reply(200, self._file_json(self.book.add_file(filename or "upload", purpose, data)))

        self.serve(handler, "upload", fields.get("file", ("",))[0] or "", work)

    def _list_files(self, handler: Any, raw: bytes) -> None:
        self.serve(handler, "list_files", "", lambda: self.json_reply(200, {
            "object": "list", "data": [self._file_json(f) for f in reversed(list(self.book.files.values()))],
            "has_more": False}))

    def _get_file(self, handler: Any, raw: bytes, id: str) -> None:  # noqa: A002
        record = self.book.files.get(id)
        self.serve(handler, "get_file", id, lambda: self.json_reply(200, self._file_json(record)) if record
                   else self._missing("file", id))

    def _download(self, handler: Any, raw: bytes, id: str) -> None:  # noqa: A002
        record = self.book.files.get(id)
        self.serve(handler, "download", id, lambda: (200, record.data, "application/octet-stream") if record
                   else self._missing("file", id))

    def _delete_file(self, handler: Any, raw: bytes, id: str) -> None:  # noqa: A002
        def work() -> tuple[int, bytes, str]:
            if self.book.files.pop(id, None) is None:
                return self._missing("file", id)
            return self.json_reply(200, {"id": id, "object": "file", "deleted": True})

        self.serve(handler, "delete_file", id, work)

    def _create_batch(self, handler: Any, raw: bytes) -> None:
        body = json.loads(raw or b"{}")

        def work() -> tuple[int, bytes, str]:
            record = self.book.files.get(body.get("input_file_id", ""))
            if record is None:
                return self._missing("file", body.get("input_file_id"))
            lines = [json.loads(line) for line in record.data.decode("utf-8").splitlines() if line.strip()]
            items = [(line["custom_id"], line["body"]) for line in lines]
            batch = self.book.create(items, {"metadata": body.get("metadata") or {},
                                             "endpoint": body.get("endpoint"), "input_file_id": record.id,
                                             "completion_window": body.get("completion_window")})
            keys = [key for key, _ in items]
            if len(set(keys)) != len(keys):
                self.book.fail(batch, "The input file contains a duplicate custom_id.")
            return self.json_reply(200, self._batch_json(batch))

        self.serve(handler, "create", "", work)

    def _list_batches(self, handler: Any, raw: bytes) -> None:
        self.serve(handler, "list_batches", "", lambda: self.json_reply(200, {
            "object": "list", "data": [self._batch_json(self.book.refresh(b))
                                       for b in reversed(list(self.book.batches.values()))],
            "has_more": False}))

    def _get_batch(self, handler: Any, raw: bytes, id: str) -> None:  # noqa: A002
        batch = self.book.batches.get(id)
        self.serve(handler, "get", id, lambda: self.json_reply(200, self._batch_json(self.book.refresh(batch)))
                   if batch else self._missing("batch", id))

    def _cancel_batch(self, handler: Any, raw: bytes, id: str) -> None:  # noqa: A002
        batch = self.book.batches.get(id)
        self.serve(handler, "cancel", id, lambda: self.json_reply(200, self._batch_json(self.book.cancel(batch)))
                   if batch else self._missing("batch", id))

    def _batch_json(self, batch: FakeBatch) -> dict[str, Any]:
        status = {COMPLETED: "completed", EXPIRED: "expired", CANCELLED: "cancelled",
                  FAILED: "failed"}.get(batch.state, "in_progress")
        with self.book.lock:
            if batch.done and batch.state != FAILED and not batch.files:
                self._write_results(batch)
        total, completed, failed = batch.counts()
        end = {"completed": "completed_at", "expired": "expired_at", "cancelled": "cancelled_at",
               "failed": "failed_at"}.get(status)
        data: dict[str, Any] = {
            "id": batch.id, "object": "batch", "endpoint": batch.labels.get("endpoint"), "model": None,
            "input_file_id": batch.labels.get("input_file_id"),
            "completion_window": batch.labels.get("completion_window") or "24h", "status": status,
            "output_file_id": batch.files.get("output"), "error_file_id": batch.files.get("error"),
            "created_at": batch.created_at, "in_progress_at": batch.created_at,
            "expires_at": batch.created_at + 86400, "metadata": batch.labels.get("metadata") or None,
            "request_counts": {"total": total, "completed": completed, "failed": failed}, "errors": None}
        if end:
            data[end] = batch.finished_at
        if batch.state == FAILED:
            data["errors"] = {"object": "list", "data": [{"code": "invalid_input", "line": None, "param": None,
                                                          "message": batch.labels.get("failure")}]}
        return data

    def _write_results(self, batch: FakeBatch) -> None:
        output, errors = [], []
        for index, result in enumerate(batch.results or []):
            line: dict[str, Any] = {"id": f"batch_req_{batch.id[-8:]}{index}", "custom_id": result.key}
            if result.expired:
                code = "batch_cancelled" if batch.state == CANCELLED else "batch_expired"
                errors.append({**line, "response": None, "error": {
                    "code": code, "message": "This request could not be executed before the batch ended."}})
                continue
            body = result.response if result.status == 200 else result.error
            line.update(response={"status_code": result.status, "request_id": uuid.uuid4().hex, "body": body},
                        error=None)
            (output if result.status == 200 else errors).append(line)
        for kind, lines in (("output", output), ("error", errors)):
            if lines:
                data = "".join(json.dumps(line) + "\n" for line in lines).encode("utf-8")
                batch.files[kind] = self.book.add_file(f"{batch.id}_{kind}.jsonl", "batch_output", data).id


def main(argv: list[str] | None = None) -> None:
    """Serve a constant reply until interrupted, printing the base URL first::

        python -c "from mede2_plugin.testing.fake_openai import main; main()" --latency 0.2 --reply TEXT
    """
    import argparse

    parser = argparse.ArgumentParser(description="fake OpenAI-compatible server on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="port (0: a free one)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--reply", default="OK", help="the text of every answer")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    server = FakeOpenAIServer(reply=args.reply, latency=args.latency, port=args.port).start()
    print(server.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
