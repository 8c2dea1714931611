"""Any OpenAI-compatible server through the ``openai`` SDK.

vLLM's ``vllm serve``, SGLang, ``llamafactory-cli api``, OpenAI, DeepSeek and Gemini's OpenAI
endpoint all speak this. Retries on 408/409/429/5xx, connection errors and timeouts are the SDK's
own (``max_retries``; exponential backoff with jitter; Retry-After honoured up to two minutes).
Local images become data URLs. For a server of a model trained with LLaMA-Factory (``vllm serve``,
SGLang), set ``engine_args`` ``image_max_pixels`` (and ``image_min_pixels``, ``model_family`` such
as ``qwen2_vl``) to the training YAML's values: every image is then resized exactly as
LLaMA-Factory resized it in training before it is sent, so the served model sees the trained
model's image tokens (the in-process ``vllm`` backend does the same). ``reasoning_content`` (or
``reasoning``) is read when the server returns it. When a server returns fewer than ``n`` choices, the
missing samples are asked for again, a bounded number of times (:func:`~.base.collect_samples`).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from typing import Any

import openai

from mede2_plugin.client.backends.base import (
    BackendError,
    BaseBackend,
    Completion,
    MissingAPIKey,
    Sample,
    collect_samples,
)
from mede2_plugin.client.config import BackendConfig, ChatRequest, is_placeholder_url
from mede2_plugin.core.media import (
    has_local_images,
    image_converter,
    map_image_urls,
    training_resize_args,
)

PLACEHOLDER_KEY = "EMPTY"  # what local servers without auth accept


def api_key_from_env(config: BackendConfig, required: bool) -> str | None:
    """The API key from ``config.api_key_env``; an error naming the variable when required.

    Also refuses a placeholder ``base_url`` (nothing can be sent there)."""
    if is_placeholder_url(config.base_url):
        raise ValueError(f"base_url {config.base_url!r} of backend {config.backend!r} is a placeholder, "
                         "not an address: give an http(s) URL")
    key = os.environ.get(config.api_key_env or "") if config.api_key_env else None
    if not key and required:
        raise MissingAPIKey(f"set the environment variable {config.api_key_env} to the API key "
                            f"of backend {config.backend!r}")
    return key or None


def response_format(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    if schema is None:
        return None
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}


def _reasoning(message: Any) -> str | None:
    for name in ("reasoning_content", "reasoning"):
        value = getattr(message, name, None)
        if value is None and getattr(message, "model_extra", None):
            value = message.model_extra.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def completion_from_response(response: Any) -> Completion:
    """Samples and usage of a chat completion (an SDK object or its JSON as a dict)."""
    if isinstance(response, dict):
        response = openai.types.chat.ChatCompletion.model_validate(response)
    samples = [Sample(text=choice.message.content or "", reasoning=_reasoning(choice.message),
                      finish_reason=choice.finish_reason) for choice in response.choices or []]
    usage = response.usage
    return Completion(samples=samples, prompt_tokens=(usage.prompt_tokens or 0) if usage else 0,
                      completion_tokens=(usage.completion_tokens or 0) if usage else 0)


class OpenAIBackend(BaseBackend):
    name = "openai"
    batched = False
    priced = True

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._api_key = api_key_from_env(config, required=config.base_url is None) or PLACEHOLDER_KEY
        self._resize_images = bool(training_resize_args(config.engine_args))
        self._image_to_url = image_converter(config.engine_args)
        self._client: openai.AsyncOpenAI | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def client(self) -> openai.AsyncOpenAI:
        """The SDK client of the running event loop (a new loop gets a new client)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = openai.AsyncOpenAI(api_key=self._api_key, base_url=self.config.base_url,
                                              max_retries=self.config.max_retries,
                                              timeout=self.config.timeout_s)
            self._loop = loop
        return self._client

    def request_kwargs(self, request: ChatRequest, n: int, messages: list[dict[str, Any]] | None = None
                       ) -> dict[str, Any]:
        """SDK arguments; ``messages`` already converted (local images as data URLs) if given."""
        if messages is None:
            messages = map_image_urls(request.messages, self._image_to_url)
        kwargs: dict[str, Any] = {"model": self.config.model, "messages": messages}
        if n != 1:
            kwargs["n"] = n
        optional = {"temperature": request.temperature, "top_p": request.top_p, "seed": request.seed,
                    "max_tokens": request.max_tokens, "stop": request.stop,
                    "response_format": response_format(request.response_schema),
                    "reasoning_effort": self.config.reasoning_effort}
        kwargs.update({k: v for k, v in optional.items() if v is not None})
        extra_body = {**self.config.extra_body, **request.extra}
        if extra_body:
            kwargs["extra_body"] = extra_body
        return kwargs

    def request_body(self, request: ChatRequest) -> dict[str, Any]:
        """The JSON body of ``request`` as one chat-completions call (local images as data URLs),
        e.g. for a line of a Batch API input file."""
        kwargs = self.request_kwargs(request, request.n)
        extra_body = kwargs.pop("extra_body", {})
        return {**kwargs, **extra_body}

    async def agenerate(self, request: ChatRequest) -> Completion:
        messages = request.messages
        if self._resize_images or has_local_images(messages):  # file reads and resizing off the event loop
            messages = await asyncio.to_thread(map_image_urls, messages, self._image_to_url)

        async def call(missing: int) -> Completion:
            response = await self._create(request, missing, messages)
            if not getattr(response, "choices", None):
                raise BackendError(f"the server returned no choices: {str(response)[:200]}")
            return completion_from_response(response)

        return await collect_samples(request.n, self.config.max_sample_calls, call)

    async def _create(self, request: ChatRequest, n: int, messages: list[dict[str, Any]]) -> Any:
        """One SDK call; a 200 whose body cannot be read (which the SDK does not retry) is retried
        here with the same exponential backoff and jitter, up to ``max_retries`` times."""
        for attempt in range(self.config.max_retries + 1):
            try:
                return await self.client.chat.completions.create(**self.request_kwargs(request, n, messages))
            except (json.JSONDecodeError, openai.APIResponseValidationError) as err:
                if attempt >= self.config.max_retries:
                    raise BackendError(f"unreadable response body after {attempt + 1} attempts: {err}") from None
                await asyncio.sleep(min(0.5 * 2 ** attempt, 8.0) * (1 - 0.25 * random.random()))
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self._client.close()
        self._client = None
