"""Shared machinery of the fake provider servers: threads, scripted replies, faults, call log.

A fake server listens on 127.0.0.1 (a free port by default), answers each call with text from a
Python callable, and can be told to misbehave on chosen calls. Subclasses only translate between
their provider's wire format and ``reply`` (see :mod:`.fake_openai` and :mod:`.fake_gemini`).

Faults (:class:`Fault`), chosen per call by ``faults``:

* a list: the i-th entry applies to the i-th call (``None`` = answer normally); calls past the
  end answer normally. Strings work too: ``"429"``, ``"500"``, ``"503"``, ``"timeout"``,
  ``"truncated"``, ``"malformed"``.
* a callable ``faults(call_index, request) -> Fault | str | None`` for anything else (a fault for
  one prompt only, every third call, ...).

``max_samples`` caps the samples (choices, candidates) of one answer, as servers that cap or
ignore ``n`` do. Provider batch endpoints (``batch_delay``, ``batch_faults``, ``batch_expires``)
are described in :mod:`.batches`.

Holds, for tests that kill a client at a chosen moment: ``server.hold("create")`` makes the next
request of that kind (each server names its kinds: ``upload``, ``create``, ``get``, ``download``,
...) wait; ``when="after"`` lets the server do what was asked first (the batch exists, the file is
stored) and holds only the answer, ``when="before"`` holds the request before anything is done.
``server.held`` is set while a request is held; ``server.release()`` lets it go (a request held
"before" is then dropped undone, as if it had never arrived).
"""

from __future__ import annotations

import inspect
import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from mede2_plugin.testing.batches import BatchBook

ReplyResult = str | tuple[str, str | None]
ReplyFn = Callable[..., ReplyResult]


@dataclass(frozen=True)
class Fault:
    """One misbehaviour of a call.

    Attributes:
        kind: ``status`` (an HTTP error), ``timeout`` (sleep ``delay`` before answering, to outlast
            the client's timeout), ``truncated`` (a body cut short, connection closed),
            ``malformed`` (200 with a body that is not JSON), ``latency`` (answer after ``delay``).
        status: HTTP status for ``kind="status"``.
        retry_after: seconds sent in a ``Retry-After`` header (None: no header).
        delay: seconds to wait for ``timeout`` and ``latency``.
    """

    kind: str
    status: int = 0
    retry_after: float | None = None
    delay: float = 0.0

    @classmethod
    def rate_limit(cls, retry_after: float | None = 1.0) -> "Fault":
        return cls("status", status=429, retry_after=retry_after)

    @classmethod
    def server_error(cls, status: int = 500, retry_after: float | None = None) -> "Fault":
        return cls("status", status=status, retry_after=retry_after)

    @classmethod
    def timeout(cls, delay: float = 30.0) -> "Fault":
        return cls("timeout", delay=delay)

    @classmethod
    def truncated(cls) -> "Fault":
        return cls("truncated")

    @classmethod
    def malformed(cls) -> "Fault":
        return cls("malformed")

    @classmethod
    def latency(cls, delay: float) -> "Fault":
        return cls("latency", delay=delay)

    @classmethod
    def parse(cls, value: "Fault | str | int | None") -> "Fault | None":
        if value is None or isinstance(value, Fault):
            return value
        text = str(value).strip().lower()
        if text.isdigit():
            status = int(text)
            return cls.rate_limit() if status == 429 else cls.server_error(status)
        if text in ("timeout", "truncated", "malformed"):
            return getattr(cls, text)()
        raise ValueError(f"unknown fault {value!r}")

    def label(self) -> str:
        return str(self.status) if self.kind == "status" else self.kind


@dataclass
class Call:
    """One call the server received."""

    index: int
    path: str
    body: dict[str, Any]
    fault: str | None
    started: float
    headers: dict[str, str] = field(default_factory=dict)


class FakeServer:
    """Base class: a threaded HTTP server with scripted replies and faults (use a subclass).

    Args:
        reply: ``reply(body) -> text`` or ``(text, reasoning)`` (or a dict, where the wire format
            takes a literal provider object: :mod:`.fake_openai`), called once per sample; a callable
            taking two arguments gets ``(body, sample_index)``. A plain string is a constant reply.
        latency: seconds every answer waits before it is sent (the benchmark's fixed latency).
        faults: a per-call list or a callable choosing faults (see the module docstring).
        port: 0 picks a free port.
        max_samples: most samples in one answer (None: as many as asked).
        batch_delay: seconds until a provider batch is answered (see :mod:`.batches`).
        batch_faults: ``batch_faults(item_key, body)``: a status fault failing that batch item.
        batch_expires: ``batch_expires(batch_number, item_key)``: true leaves that item unanswered.
        usage: how answers report token usage: ``words`` (whitespace words; images a fixed count)
            or ``tokens`` (realistic: :func:`bpe_tokens` of the text plus the chat format's tokens
            per message, images as the provider bills them).
    """

    def __init__(self, reply: ReplyFn | str = "OK", latency: float = 0.0,
                 faults: Sequence[Fault | str | None] | Callable[[int, dict[str, Any]], Any] | None = None,
                 host: str = "127.0.0.1", port: int = 0, max_samples: int | None = None,
                 batch_delay: float = 0.0, batch_faults: Callable[[str, dict[str, Any]], Any] | None = None,
                 batch_expires: Callable[[int, str], bool] | None = None, usage: str = "words") -> None:
        if usage not in ("words", "tokens"):
            raise ValueError(f"usage must be 'words' or 'tokens', got {usage!r}")
        self.usage = usage
        self.reply = reply
        self.latency = latency
        self.faults = faults
        self.host = host
        self.max_samples = max_samples
        self._port = port
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.calls: list[Call] = []
        self._fault_offset = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        item_fault = None if batch_faults is None else (lambda key, body: Fault.parse(batch_faults(key, body)))
        self.book = BatchBook(self.answer, self.error_body, delay=batch_delay, faults=item_fault,
                              expires=batch_expires)
        self.events: list[tuple[str, str]] = []  # (kind, object id) of every batch/file request
        self._holds: dict[str, str] = {}
        self.held = threading.Event()
        self._released = threading.Event()

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> "FakeServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as two writes

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                server._dispatch("POST", self)

            def do_GET(self) -> None:  # noqa: N802
                server._dispatch("GET", self)

            def do_DELETE(self) -> None:  # noqa: N802
                server._dispatch("DELETE", self)

        class Httpd(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

        self._httpd = Httpd((self.host, self._port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{type(self).__name__}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._released.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "FakeServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- call log -------------------------------------------------------------------------
    @property
    def call_count(self) -> int:
        """Calls received (faulty ones included)."""
        with self._lock:
            return len(self.calls)

    @property
    def answered_count(self) -> int:
        """Calls answered normally."""
        with self._lock:
            return sum(1 for c in self.calls if c.fault in (None, "latency"))

    def reset_calls(self) -> None:
        with self._lock:
            self.calls.clear()

    def set_faults(self, faults: Any) -> None:
        """Replace the fault schedule; list indexes count from the next call."""
        with self._lock:
            self.faults = faults
            self._fault_offset = len(self.calls)

    # -- holds ----------------------------------------------------------------------------
    def hold(self, kind: str, when: str = "after") -> None:
        """Hold the next request of ``kind`` (see the module docstring)."""
        if when not in ("before", "after"):
            raise ValueError(f"when must be 'before' or 'after', got {when!r}")
        self._released.clear()
        self.held.clear()
        self._holds[kind] = when

    def release(self) -> None:
        """Let a held request go."""
        self._released.set()

    def serve(self, handler: BaseHTTPRequestHandler, kind: str, object_id: str,
              work: Callable[[], tuple[int, bytes, str]]) -> None:
        """Answer one batch/file request: log it, honour a hold of ``kind``, then run ``work()``
        (returning status, body, content type) and send what it returns."""
        with self._lock:
            self.events.append((kind, object_id))
            when = self._holds.pop(kind, None)
        if when == "before":
            self.held.set()
            self._released.wait()
            handler.close_connection = True
            return
        status, payload, content_type = work()
        if when == "after":
            self.held.set()
            self._released.wait()
        try:
            self._send_raw(handler, status, payload, content_type=content_type)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def routes(self) -> list[tuple[str, str, Callable[..., None]]]:
        """``(method, path regex, handler)`` of the batch/file endpoints (subclasses); the regex's
        named groups are passed to the handler as keyword arguments."""
        return []

    def route(self, method: str, path: str) -> Callable[[BaseHTTPRequestHandler, bytes], None] | None:
        """The handler of a batch/file endpoint, or None for the chat endpoint."""
        path = path.split("?", 1)[0].rstrip("/")
        for verb, pattern, target in self.routes():
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                return lambda handler, raw, target=target, match=match: target(handler, raw, **match.groupdict())
        return None

    @staticmethod
    def json_reply(status: int, data: Any) -> tuple[int, bytes, str]:
        """``(status, body, content type)`` of a JSON answer, for :meth:`serve`."""
        return status, json.dumps(data).encode("utf-8"), "application/json"

    def event_count(self, kind: str) -> int:
        with self._lock:
            return sum(1 for k, _ in self.events if k == kind)

    # -- request handling -----------------------------------------------------------------
    def _dispatch(self, method: str, handler: BaseHTTPRequestHandler) -> None:
        target = self.route(method, handler.path)
        if target is not None:
            length = int(handler.headers.get("Content-Length") or 0)
            target(handler, handler.rfile.read(length) if length else b"")
        elif method == "POST":
            self._handle(handler)
        elif method == "GET":
            self._handle_get(handler)
        else:
            self._send_json(handler, 404, self.error_body(404, f"no route {method} {handler.path}"))

    def _choose_fault(self, index: int, body: dict[str, Any]) -> Fault | None:
        faults = self.faults
        if faults is None:
            return None
        if callable(faults):
            return Fault.parse(faults(index, body))
        position = index - self._fault_offset
        if 0 <= position < len(faults):
            return Fault.parse(faults[position])
        return None

    def _register(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> tuple[Call, Fault | None]:
        with self._lock:
            index = len(self.calls)
            fault = self._choose_fault(index, body)
            call = Call(index=index, path=handler.path, body=body, fault=fault.label() if fault else None,
                        started=time.monotonic(),
                        headers={k.lower(): v for k, v in handler.headers.items()
                                 if k.lower() not in ("authorization", "x-goog-api-key")})
            self.calls.append(call)
        return call, fault

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._send_json(handler, 400, self.error_body(400, "request body is not JSON"))
            return
        if not self.accepts(handler.path):
            self._send_json(handler, 404, self.error_body(404, f"no route {handler.path}"))
            return
        body = self.normalise(handler.path, body)
        call, fault = self._register(handler, body)
        try:
            self._sleep(self.latency)
            if fault is not None and fault.kind in ("latency", "timeout"):
                self._sleep(fault.delay)
                if self._stopping.is_set():
                    return
            if fault is not None and fault.kind == "status":
                headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
                self._send_json(handler, fault.status, self.error_body(fault.status, "injected fault"), headers)
                return
            payload = json.dumps(self.answer(body, call.index)).encode("utf-8")
            if fault is not None and fault.kind == "malformed":
                self._send_raw(handler, 200, b'{"id": "broken", "choices": [{"message": ')
                return
            if fault is not None and fault.kind == "truncated":
                handler.send_response(200)
                handler.send_header("Content-Type", "application/json")
                handler.send_header("Content-Length", str(len(payload)))
                handler.end_headers()
                handler.wfile.write(payload[: len(payload) // 2])
                handler.wfile.flush()
                handler.close_connection = True
                return
            self._send_raw(handler, 200, payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout); nothing to answer

    def _handle_get(self, handler: BaseHTTPRequestHandler) -> None:
        self._send_json(handler, 404, self.error_body(404, f"no route {handler.path}"))

    def _send_json(self, handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any],
                   headers: dict[str, str] | None = None) -> None:
        self._send_raw(handler, status, json.dumps(body).encode("utf-8"), headers)

    @staticmethod
    def _send_raw(handler: BaseHTTPRequestHandler, status: int, payload: bytes,
                  headers: dict[str, str] | None = None, content_type: str = "application/json") -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(payload)
        handler.wfile.flush()

    def _sample(self, body: dict[str, Any], index: int) -> tuple[str | dict[str, Any], str | None]:
        reply = self.reply
        if isinstance(reply, str):
            return reply, None
        try:
            takes_index = len(inspect.signature(reply).parameters) >= 2
        except (TypeError, ValueError):
            takes_index = False
        result = reply(body, index) if takes_index else reply(body)
        if isinstance(result, tuple):
            text, reasoning = result
            return str(text), reasoning
        if isinstance(result, dict):  # a literal provider object, sent as it is (see the subclass)
            return result, None
        return str(result), None

    # -- wire format (subclasses) ---------------------------------------------------------
    def accepts(self, path: str) -> bool:
        raise NotImplementedError

    def normalise(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return body

    def answer(self, body: dict[str, Any], call_index: int) -> dict[str, Any]:
        raise NotImplementedError

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        raise NotImplementedError

    def tokens(self, text: str) -> int:
        """Tokens of an answer's or a prompt's text, as ``usage`` says."""
        return bpe_tokens(text) if self.usage == "tokens" else count_tokens(text)

    def prompt_usage(self, texts: list[str], images: list[str], model: str, provider: str, fixed: int) -> int:
        """Prompt tokens of a request: its messages' ``texts`` and ``images`` (data URLs); with
        ``usage="words"`` each image counts ``fixed``, with ``tokens`` as ``provider`` bills it
        plus 3 tokens per message and 3 for the reply's start (OpenAI's chat format)."""
        if self.usage == "words":
            return count_tokens("\n".join(texts)) + fixed * len(images)
        from mede2_plugin.client.estimate import image_size, image_tokens

        return (sum(3 + bpe_tokens(text) for text in texts) + 3
                + sum(image_tokens(provider, model, image_size(url)) for url in images))


def count_tokens(text: str) -> int:
    """The fake servers' token count: whitespace-separated words (at least 1 for non-empty text)."""
    return len(text.split()) or (1 if text else 0)


#: the pieces a GPT-style byte-level BPE pre-tokenizer cuts text into before merging
_PIECES = re.compile(r"'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d{1,3}| ?[^\s\w]+|\s+(?!\S)|\s+")


def bpe_tokens(text: str) -> int:
    """A tokenizer-like count (``usage="tokens"``): the pieces a GPT-style BPE pre-tokenizer cuts
    ``text`` into (a word with its leading space, up to 3 digits, a punctuation run, whitespace),
    a word longer than 7 letters counting one more token per 4 letters beyond. On real MedQA,
    MedXpertQA, MMMU-Pro and Medbullets rows and the package's prompts this gives 1.04 times the
    ``o200k_base`` (GPT-4o) count (``tests/benchmarks/bench_token_estimate.py``); whitespace words
    (:func:`count_tokens`) give 0.56 times."""
    total = 0
    for piece in _PIECES.findall(text):
        word = piece.strip()
        total += 1 + (max(0, -(-(len(word) - 7) // 4)) if word[:1].isalpha() else 0)
    return total
