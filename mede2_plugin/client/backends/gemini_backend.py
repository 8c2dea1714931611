"""Gemini through ``google-genai``: images as inline parts, JSON output, thinking budget.

Messages map to Gemini contents (system -> ``system_instruction``, assistant -> role ``model``;
images -> inline bytes). ``response_schema`` asks for ``application/json`` with the schema as
``response_json_schema``. ``thinking_budget`` sets ``ThinkingConfig`` and asks for thoughts, which
come back as the samples' ``reasoning``. ``n`` is ``candidate_count``; missing candidates are asked
for again, a bounded number of times (:func:`~.base.collect_samples`).

API version: the client is built with ``HttpOptions(api_version=config.gemini_api_version)``
(``v1beta`` unless set), never with the SDK's default, which moved from ``v1beta`` to ``v1`` in
google-genai 3.x. ``v1beta`` is the version whose ``generateContent`` documents all we send
(``systemInstruction``, ``responseJsonSchema``, ``thinkingConfig.includeThoughts``, inline data).

Retries: the SDK's ``HttpRetryOptions`` retry with tenacity's exponential backoff and jitter but
ignore ``Retry-After`` (and Gemini's ``RetryInfo``) and bodies cut short, so the SDK's own retry
is switched off and the same tenacity machinery is used here with a wait that honours
``Retry-After`` / ``RetryInfo`` (up to two minutes), on
the SDK's retryable statuses (408, 429, 500, 502, 503, 504), timeouts, broken connections and
unreadable bodies.
The async client is given an ``httpx.AsyncClient`` so its timeouts are httpx timeouts.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time
from typing import Any

import httpx
import tenacity
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from mede2_plugin.client.backends.base import (
    BackendError,
    BaseBackend,
    Completion,
    Sample,
    collect_samples,
)
from mede2_plugin.client.backends.openai_backend import api_key_from_env
from mede2_plugin.client.config import BackendConfig, ChatRequest
from mede2_plugin.core.media import image_url, load_image

RETRYABLE_STATUS = (408, 429, 500, 502, 503, 504)


class _MultiCandidateNote(logging.Filter):
    """The SDK warns when it parses JSON of the first of several candidates; we read them all."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "candidates, returning text result" not in record.getMessage()


logging.getLogger("google_genai.types").addFilter(_MultiCandidateNote())
MAX_RETRY_AFTER_S = 120.0
PLACEHOLDER_KEY = "EMPTY"


def _retry_info_seconds(err: BaseException) -> float | None:
    """``retryDelay`` of a ``google.rpc.RetryInfo`` detail in a Gemini error body (e.g. "37s")."""
    details = getattr(err, "details", None)
    error = details.get("error", details) if isinstance(details, dict) else None
    for item in (error or {}).get("details", []) if isinstance(error, dict) else []:
        delay = item.get("retryDelay") if isinstance(item, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return float(delay[:-1])
            except ValueError:
                return None
    return None


def retry_after_seconds(err: BaseException) -> float | None:
    """Server-directed delay of a failed call: ``Retry-After`` (seconds or HTTP date),
    ``retry-after-ms``, or Gemini's ``RetryInfo.retryDelay`` in the error body."""
    info = _retry_info_seconds(err)
    if info is not None:
        return info
    response = getattr(err, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return float(value) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def is_retryable(err: BaseException) -> bool:
    if isinstance(err, genai_errors.APIError):
        return err.code in RETRYABLE_STATUS
    # a 200 whose body is cut short or not JSON: worth another try, like a broken connection
    return isinstance(err, (httpx.TimeoutException, httpx.TransportError, asyncio.TimeoutError,
                            json.JSONDecodeError))


class _WaitRetryAfter(tenacity.wait.wait_base):
    """Retry-After when the server sends one, else exponential backoff with jitter."""

    def __init__(self, initial: float = 1.0, maximum: float = 60.0) -> None:
        self.backoff = tenacity.wait_exponential_jitter(initial=initial, max=maximum, exp_base=2, jitter=initial)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        err = outcome.exception() if outcome is not None else None
        seconds = retry_after_seconds(err) if err is not None else None
        if seconds is not None and 0 <= seconds <= MAX_RETRY_AFTER_S:
            return seconds
        return self.backoff(retry_state)


def to_contents(messages: list[dict[str, Any]]) -> tuple[str | None, list[types.Content]]:
    """System instruction text and Gemini contents for OpenAI-style messages."""
    system: list[str] = []
    contents: list[types.Content] = []
    for message in messages:
        role = message.get("role")
        content = message.get("content")
        if role == "system":
            system.append(content if isinstance(content, str) else
                          "".join(p.get("text", "") for p in content or []))
            continue
        parts: list[types.Part] = []
        for part in [{"type": "text", "text": content}] if isinstance(content, str) else content or []:
            url = image_url(part)
            if url is not None:
                data, mime = load_image(url)
                parts.append(types.Part.from_bytes(data=data, mime_type=mime))
            elif part.get("type") == "text":
                parts.append(types.Part.from_text(text=part.get("text", "")))
        contents.append(types.Content(role="model" if role == "assistant" else "user", parts=parts))
    return ("\n\n".join(system) if system else None), contents


def completion_from_response(response: types.GenerateContentResponse) -> Completion:
    """Samples (thought parts as reasoning) and usage (thoughts counted as output) of a response."""
    samples = []
    for candidate in response.candidates or []:
        parts = (candidate.content.parts if candidate.content else None) or []
        text = "".join(p.text or "" for p in parts if not p.thought)
        thoughts = "".join(p.text or "" for p in parts if p.thought)
        reason = candidate.finish_reason
        finish = str(reason.value if hasattr(reason, "value") else reason).lower() if reason else None
        samples.append(Sample(text=text, reasoning=thoughts or None, finish_reason=finish))
    usage = response.usage_metadata
    return Completion(samples=samples, prompt_tokens=(usage.prompt_token_count or 0) if usage else 0,
                      completion_tokens=((usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0))
                      if usage else 0)


class GeminiBackend(BaseBackend):
    name = "gemini"
    batched = False
    priced = True

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._api_key = api_key_from_env(config, required=config.base_url is None) or PLACEHOLDER_KEY
        self._client: genai.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._httpx: httpx.AsyncClient | None = None

    @property
    def client(self) -> genai.Client:
        """The SDK client of the running event loop (a new loop gets a new client)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._httpx = httpx.AsyncClient(timeout=self.config.timeout_s,
                                            limits=httpx.Limits(max_connections=max(100, self.config.concurrency)))
            options = types.HttpOptions(base_url=self.config.base_url, api_version=self.config.gemini_api_version,
                                        timeout=int(self.config.timeout_s * 1000),
                                        retry_options=types.HttpRetryOptions(attempts=1),
                                        httpx_async_client=self._httpx)
            self._client = genai.Client(api_key=self._api_key, http_options=options)
            self._loop = loop
        return self._client

    def generation_config(self, request: ChatRequest, system: str | None, count: int) -> types.GenerateContentConfig:
        fields: dict[str, Any] = {"system_instruction": system, "temperature": request.temperature,
                                  "top_p": request.top_p, "max_output_tokens": request.max_tokens,
                                  "seed": request.seed, "stop_sequences": request.stop}
        if count != 1:
            fields["candidate_count"] = count
        if request.response_schema is not None:
            fields["response_mime_type"] = "application/json"
            if "response_json_schema" in types.GenerateContentConfig.model_fields:
                fields["response_json_schema"] = request.response_schema
            else:  # older SDKs
                fields["response_schema"] = request.response_schema
        if self.config.thinking_budget is not None:
            fields["thinking_config"] = types.ThinkingConfig(
                thinking_budget=self.config.thinking_budget, include_thoughts=self.config.thinking_budget != 0)
        fields.update(request.extra)
        return types.GenerateContentConfig(**{k: v for k, v in fields.items() if v is not None})

    def retrying(self) -> tenacity.AsyncRetrying:
        """The retry policy of every idempotent call (see the module docstring)."""
        return tenacity.AsyncRetrying(stop=tenacity.stop_after_attempt(self.config.max_retries + 1),
                                      retry=tenacity.retry_if_exception(is_retryable),
                                      wait=_WaitRetryAfter(self.config.retry_initial_s, self.config.retry_max_s),
                                      reraise=True)

    async def _call(self, request: ChatRequest, system: str | None, contents: list[types.Content],
                    count: int) -> Any:
        config = self.generation_config(request, system, count)
        return await self.retrying()(self.client.aio.models.generate_content, model=self.config.model,
                                     contents=contents, config=config)

    async def agenerate(self, request: ChatRequest) -> Completion:
        system, contents = await asyncio.to_thread(to_contents, request.messages)

        async def call(missing: int) -> Completion:
            response = await self._call(request, system, contents, missing)
            if not response.candidates:
                feedback = getattr(response, "prompt_feedback", None)
                raise BackendError(f"Gemini returned no candidates (prompt feedback: {feedback})")
            return completion_from_response(response)

        return await collect_samples(request.n, self.config.max_sample_calls, call)

    async def aclose(self) -> None:
        if self._httpx is not None and self._loop is asyncio.get_running_loop():
            await self._httpx.aclose()
        self._client = None
        self._httpx = None
