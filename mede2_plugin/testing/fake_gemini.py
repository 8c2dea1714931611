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
"""

from __future__ import annotations

import re
from typing import Any

from mede2_plugin.client.config import BackendConfig
from mede2_plugin.testing.server import FakeServer, Fault, count_tokens

__all__ = ["DEFAULT_API_VERSION", "FakeGeminiServer", "Fault", "prompt_text"]

DEFAULT_API_VERSION: str = BackendConfig.gemini_api_version  # the dataclass default: what the backend asks for
_STATUS = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
           503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


def prompt_text(body: dict[str, Any]) -> str:
    """All text of a generateContent request (system instruction first), joined by newlines."""
    texts = []
    system = body.get("systemInstruction") or body.get("system_instruction")
    if system:
        texts.extend(p.get("text", "") for p in system.get("parts", []) if "text" in p)
    for content in body.get("contents", []):
        texts.extend(p.get("text", "") for p in content.get("parts", []) if "text" in p)
    return "\n".join(texts)


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
        count = int(config.get("candidateCount") or 1)
        thinking = config.get("thinkingConfig") or config.get("thinking_config") or {}
        include_thoughts = bool(thinking.get("includeThoughts") or thinking.get("include_thoughts"))
        candidates = []
        output_tokens = thought_tokens = 0
        for index in range(count):
            text, thought = self._sample(body, index)
            parts: list[dict[str, Any]] = []
            if thought is not None:
                thought_tokens += count_tokens(thought)
                if include_thoughts:
                    parts.append({"text": thought, "thought": True})
            parts.append({"text": text})
            output_tokens += count_tokens(text)
            candidates.append({"content": {"role": "model", "parts": parts}, "finishReason": "STOP",
                               "index": index})
        prompt_tokens = count_tokens(prompt_text(body)) + 258 * len(inline_images(body))
        usage = {"promptTokenCount": prompt_tokens, "candidatesTokenCount": output_tokens,
                 "totalTokenCount": prompt_tokens + output_tokens + thought_tokens}
        if thought_tokens:
            usage["thoughtsTokenCount"] = thought_tokens
        return {"candidates": candidates, "usageMetadata": usage, "modelVersion": body.get("model"),
                "responseId": f"fake-{call_index}"}

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return {"error": {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}}
