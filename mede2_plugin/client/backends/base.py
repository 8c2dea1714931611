"""The one interface every backend implements, and the registry that finds them lazily.

A backend turns :class:`~mede2_plugin.client.config.ChatRequest` objects into
:class:`Completion` objects. It does *not* cache, pace, retry at the item level, account cost or
write outputs: :func:`mede2_plugin.client.run_batch` does all of that for every backend.

What a backend must provide (subclass :class:`BaseBackend`, which fills in the defaults):

* ``__init__(self, config: BackendConfig)`` - build clients/engines. Read the API key from
  ``os.environ[config.api_key_env]`` here and keep it only inside the SDK client; never put it in
  a Completion, an error message or a log line.
* ``batched`` (class attribute):
    - ``False`` (API backends: openai, gemini): ``run_batch`` calls ``await agenerate(request)``
      for each request, at most ``config.concurrency`` at once, under the rpm/tpm limits. Retries
      on 429/5xx/timeouts belong to the SDK, configured from ``config.max_retries`` and
      ``config.timeout_s``; a call that still fails raises, and the item gets an ``error``.
    - ``True`` (in-process engines: vllm, local): ``run_batch`` hands chunks of up to
      ``config.batch_size`` requests to ``generate_batch(requests)`` in a worker thread, one chunk
      at a time, and writes each chunk's results as soon as it returns. Return one entry per
      request, in order: a :class:`Completion`, or an exception instance for a request that failed
      (the others still count). Raising fails the whole chunk.
* ``priced`` (class attribute): ``True`` when calls cost money (API backends); ``False`` gives
  cost 0.0 for in-process engines unless a price is configured for the model.
* ``aclose()`` / ``close()`` - release clients/engines; ``run_batch`` awaits ``aclose()`` at the
  end of a batch it built the backend for (the default calls ``close()``). API clients bound to an
  event loop should be made lazily per running loop, since each ``run_batch`` runs its own loop.

Samples: return ``request.n`` samples per request (an engine's native ``n`` or repeated
sampling). A server that returns fewer than asked is asked for the rest through
:func:`collect_samples` (at most ``config.max_sample_calls`` calls); what came back is then
returned with a ``warning``. ``Sample.reasoning`` is the separate reasoning text when the server
returns one (OpenAI-compatible ``reasoning_content``, Gemini thought parts), else None.

Images: request messages carry OpenAI ``image_url`` parts whose URL is a data URL, an http(s)
URL, a ``file://`` URI or a plain local path. Use :mod:`mede2_plugin.core.media`
(``load_image``, ``to_data_url``, ``to_pil``, ``split_messages``) to turn them into the
backend's own form.

Registry: :data:`BACKENDS` maps a backend name to ``"module:Class"``, imported only when used, so
``vllm`` or ``llamafactory`` are needed only by the backends that use them.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    from mede2_plugin.client.config import BackendConfig, ChatRequest

BACKENDS: dict[str, str] = {
    "openai": "mede2_plugin.client.backends.openai_backend:OpenAIBackend",
    "gemini": "mede2_plugin.client.backends.gemini_backend:GeminiBackend",
    "vllm": "mede2_plugin.client.backends.vllm_backend:VLLMBackend",
    "local": "mede2_plugin.client.backends.local_backend:LocalBackend",
}


@dataclass
class Sample:
    """One generated answer.

    Attributes:
        text: the answer text (for JSON output: the JSON string).
        reasoning: separate reasoning text when the backend returns one, else None.
        finish_reason: why generation stopped (``stop``, ``length``, ...), when known.
    """

    text: str
    reasoning: str | None = None
    finish_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "reasoning": self.reasoning, "finish_reason": self.finish_reason}


@dataclass
class Completion:
    """All samples of one request and the tokens it used (summed over samples and calls).

    ``warning`` says why there are fewer samples than the request asked for (None otherwise).
    """

    samples: list[Sample] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    warning: str | None = None


class BackendError(RuntimeError):
    """A call that failed for a reason worth one clear line in the item's ``error`` field."""


class MissingAPIKey(BackendError, ValueError):
    """The environment variable holding the API key is not set: nothing can be sent."""


async def collect_samples(n: int, max_calls: int, call: Callable[[int], Awaitable[Completion]]) -> Completion:
    """``n`` samples from ``call(missing)``, which asks the server for ``missing`` samples once.

    A server may return fewer than asked (it caps ``n``, or ignores it): the rest are asked for
    again, ``max_calls`` calls in all at most. Collecting also ends when a further call fails
    (after the SDK's retries) or returns nothing; the samples already paid for are kept and the
    completion's ``warning`` says how many are missing and why. A first call that fails raises.
    """
    total = Completion()
    calls = 0
    reason = None
    while len(total.samples) < n:
        if calls >= max_calls:
            reason = f"the server returned fewer than asked and {calls} calls did not give the rest"
            break
        missing = n - len(total.samples)
        try:
            part = await call(missing)
        except Exception as err:  # noqa: BLE001 - a failed top-up keeps what was paid for
            if calls == 0:
                raise
            reason = f"a further call failed ({type(err).__name__}: {err})"
            break
        calls += 1
        total.samples.extend(part.samples[:missing])
        total.prompt_tokens += part.prompt_tokens
        total.completion_tokens += part.completion_tokens
        if not part.samples:
            reason = f"call {calls} returned no sample"
            break
    if reason is not None:
        total.warning = f"{len(total.samples)} of {n} samples: {reason}"
    return total


@runtime_checkable
class Backend(Protocol):
    """What :func:`run_batch` needs from a backend (see the module docstring)."""

    name: ClassVar[str]
    batched: ClassVar[bool]
    priced: ClassVar[bool]

    async def agenerate(self, request: "ChatRequest") -> Completion: ...

    def generate_batch(self, requests: Sequence["ChatRequest"]) -> list[Completion | BaseException]: ...

    def close(self) -> None: ...


class BaseBackend:
    """Defaults: a batched backend gets ``agenerate`` for free and vice versa."""

    name: ClassVar[str] = "base"
    batched: ClassVar[bool] = False
    priced: ClassVar[bool] = True

    def __init__(self, config: "BackendConfig") -> None:
        self.config = config

    async def agenerate(self, request: "ChatRequest") -> Completion:
        if type(self).generate_batch is BaseBackend.generate_batch:
            raise NotImplementedError(f"{type(self).__name__} implements neither agenerate nor generate_batch")
        (result,) = await asyncio.to_thread(self.generate_batch, [request])
        if isinstance(result, BaseException):
            raise result
        return result

    def generate_batch(self, requests: Sequence["ChatRequest"]) -> list[Completion | BaseException]:
        if type(self).agenerate is BaseBackend.agenerate:
            raise NotImplementedError(f"{type(self).__name__} implements neither agenerate nor generate_batch")

        async def run_all() -> list[Completion | BaseException]:
            return await asyncio.gather(*(self.agenerate(r) for r in requests), return_exceptions=True)

        return asyncio.run(run_all())

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        self.close()


def backend_class(name: str) -> type:
    """The backend class registered under ``name``, imported now."""
    try:
        spec = BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}") from None
    module_name, class_name = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ImportError(f"backend {name!r} needs a package that is not installed: {err}") from err
    return getattr(module, class_name)


def create_backend(config: "BackendConfig") -> Backend:
    """Instantiate the backend ``config.backend`` names."""
    return backend_class(config.backend)(config)


class SharedBackend:
    """One backend for several :func:`run_batch` calls, built on the first uncached request.

    ``run_batch`` builds and closes a backend per call; for in-process models (``local``,
    ``vllm``) that means loading the weights (or starting the engine) once per call. Pass one
    ``SharedBackend`` as ``backend=`` to each call instead: the model loads at most once, not at
    all when everything is cached, and :meth:`close` (or the ``with`` block) releases it.
    """

    def __init__(self, config: "BackendConfig") -> None:
        self.config = config
        self._class = backend_class(config.backend)
        self.name: str = self._class.name
        self.batched: bool = self._class.batched
        self.priced: bool = self._class.priced
        self.builds = 0
        self._inner: Backend | None = None

    def _backend(self) -> Backend:
        if self._inner is None:
            self._inner = self._class(self.config)
            self.builds += 1
        return self._inner

    async def agenerate(self, request: "ChatRequest") -> Completion:
        return await self._backend().agenerate(request)

    def generate_batch(self, requests: Sequence["ChatRequest"]) -> list[Completion | BaseException]:
        return self._backend().generate_batch(requests)

    def close(self) -> None:
        inner, self._inner = self._inner, None
        if inner is not None:
            inner.close()

    def __enter__(self) -> "SharedBackend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
