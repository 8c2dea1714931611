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
"""

from __future__ import annotations

import sys
import time
import uuid
from typing import Any

from mede2_plugin.testing.server import FakeServer, Fault, count_tokens

__all__ = ["FakeOpenAIServer", "Fault", "prompt_text"]


def prompt_text(body: dict[str, Any]) -> str:
    """All text of an OpenAI chat request's messages, joined by newlines (images left out)."""
    texts = []
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        else:
            texts.extend(p.get("text", "") for p in content or [] if p.get("type") == "text")
    return "\n".join(texts)


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
        n = int(body.get("n") or 1)
        choices = []
        completion_tokens = 0
        for index in range(n):
            text, reasoning = self._sample(body, index)
            if isinstance(text, dict):  # a literal choice object, as a provider returns it
                choice = {"index": index, "logprobs": None, "finish_reason": "stop", **text}
                message = choice["message"]
                completion_tokens += count_tokens(message.get("content") or "") + count_tokens(
                    message.get("reasoning_content") or message.get("reasoning") or "")
                choices.append(choice)
                continue
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if reasoning is not None:
                message["reasoning_content"] = reasoning
            completion_tokens += count_tokens(text) + count_tokens(reasoning or "")
            max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
            finish = "length" if max_tokens and count_tokens(text) >= max_tokens else "stop"
            choices.append({"index": index, "message": message, "finish_reason": finish, "logprobs": None})
        prompt_tokens = count_tokens(prompt_text(body)) + 64 * len(image_urls(body))
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion",
                "created": int(time.time()), "model": body.get("model", "fake"), "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        kinds = {429: "rate_limit_error", 400: "invalid_request_error", 404: "not_found_error"}
        return {"error": {"message": message, "type": kinds.get(status, "server_error"), "code": status}}


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
