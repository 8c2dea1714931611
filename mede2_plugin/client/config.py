"""Declarative settings of the client layer: which backend, how fast, how much it may cost.

:class:`BackendConfig` says where calls go and how they are paced; :class:`ChatRequest` is one
OpenAI-style chat request with a stable id. Both are plain dataclasses; a YAML file with the same
field names loads through :func:`load_backend_config`. Secrets never live here: ``api_key_env``
only names the environment variable that holds the key.
"""

from __future__ import annotations

import dataclasses
import numbers
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BACKEND_NAMES = ("openai", "gemini", "vllm", "local")
DEFAULT_API_KEY_ENV = {"openai": "OPENAI_API_KEY", "gemini": "GEMINI_API_KEY"}
MODES = ("interactive", "batch")
BATCH_MODE_BACKENDS = ("openai", "gemini")  #: backends with a provider batch API
BATCH_RETRY = ("interactive", "batch", "fail")
#: most samples one request may ask for (OpenAI's own cap on ``n``)
MAX_SAMPLES = 128
#: message roles a request may use
ROLES = ("system", "developer", "user", "assistant")


class RequestError(ValueError):
    """A request that cannot be sent as it is (bad id, ``n``, messages, ...): nothing was sent."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


@dataclass
class BackendConfig:
    """Where model calls go and how they are paced, retried, cached and priced.

    Attributes:
        backend: ``openai`` (any OpenAI-compatible server), ``gemini`` (google-genai), ``vllm``
            (in-process engine) or ``local`` (LLaMA-Factory ``ChatModel``, HuggingFace engine).
        model: model name sent to the server, or a local model folder for ``vllm``/``local``.
        base_url: server address (``http://host:port/v1`` for OpenAI-compatible servers, the API
            root for Gemini); None uses the provider's default endpoint.
        api_key_env: name of the environment variable holding the API key (never the key itself);
            None picks ``OPENAI_API_KEY`` / ``GEMINI_API_KEY`` by backend.
        concurrency: most requests in flight at once.
        rpm: requests-per-minute limit (None: no limit).
        tpm: tokens-per-minute limit (None: no limit); a request counts its prompt estimate plus
            ``max_tokens * n`` up front and is corrected to the real usage afterwards.
        max_retries: retries per call after the first attempt, done by the SDK's own retry
            machinery on 408/429/5xx, connection errors and timeouts (exponential backoff with
            jitter, Retry-After honoured).
        retry_initial_s: first backoff delay of the Gemini retries (exponential, base 2, plus up to
            this much jitter); the openai SDK uses its own fixed 0.5 s start and 8 s cap.
        retry_max_s: longest backoff delay of the Gemini retries.
        timeout_s: seconds one HTTP attempt may take before it counts as a timeout.
        prices: USD per million tokens by model, ``{model: {"input": x, "output": y}}`` (plus
            ``"batch": {"input": x, "output": y}`` for ``mode: batch``); merged over the built-in
            table in :mod:`mede2_plugin.client.cost`. A model without a price has cost ``None``
            ("unknown") in outputs.
        budget_usd: stop starting new requests once the spend of this run reaches this; the rest
            are reported as not attempted (a rerun with a larger budget continues).
        cache_dir: folder of the persistent response cache shared by every output file that uses
            it; None puts it next to the output (``<output folder>/.mede2-cache``); ``"off"``
            disables caching.
        thinking_budget: Gemini thinking budget in tokens (None: the model's default; 0: off).
        gemini_api_version: Gemini API version of the request path
            (``{base_url}/v1beta/models/{model}:generateContent``), set explicitly rather than left
            to google-genai, whose default moved from ``v1beta`` to ``v1`` in 3.x. ``v1beta`` is the
            version whose ``generateContent`` takes all the backend sends: ``systemInstruction``,
            ``responseJsonSchema``, ``thinkingConfig`` with ``includeThoughts``, inline images.
        reasoning_effort: OpenAI ``reasoning_effort`` for reasoning models (None: not sent).
        batch_size: requests per engine call for batch backends (``vllm``, ``local``).
        engine_args: extra arguments of in-process engines (``local``: LLaMA-Factory model args
            such as ``template``; ``vllm``: ``vllm.LLM`` arguments such as
            ``tensor_parallel_size``); for ``openai``, ``image_max_pixels`` /
            ``image_min_pixels`` / ``model_family`` resize images as in training before sending.
        extra_body: extra JSON fields sent with every OpenAI-compatible request (e.g. ``top_k``).
        progress: show a tqdm progress bar.
        max_sample_calls: most calls made for one request when the server returns fewer samples
            than ``n`` asks (some servers cap or ignore ``n``); the row then holds what came back,
            with ``short_by`` (how many are missing) and a ``warning``.
        cache_lease_s: while a call is in flight its cache key is claimed, so another run sharing
            the cache waits for the answer instead of paying again; the owner renews the claim
            every ``cache_lease_s / 3`` seconds, and a claim not renewed for ``cache_lease_s``
            (its owner was killed) is taken over.
        mode: ``interactive`` (one call per request) or ``batch``: the provider's batch API
            (OpenAI Batch API, Gemini batch mode; ``openai`` and ``gemini`` backends only), billed
            at the batch price, answered within hours. See :mod:`mede2_plugin.client.provider_batch`.
        batch_poll_s: first wait between two polls of a submitted batch (grows 1.5x per poll).
        batch_poll_max_s: longest wait between two polls.
        batch_max_requests: most requests per submitted batch (None: the provider's limit).
        batch_max_bytes: most bytes of requests per submitted batch (None: the provider's limit).
        batch_retry: what happens to items a batch returns failed or expired: ``interactive``
            (asked again one by one at the interactive price), ``batch`` (a new batch) or
            ``fail`` (an ``error`` row; a rerun asks again).
    """

    backend: str = "openai"
    model: str = ""
    base_url: str | None = None
    api_key_env: str | None = None
    concurrency: int = 8
    rpm: float | None = None
    tpm: float | None = None
    max_retries: int = 5
    retry_initial_s: float = 1.0
    retry_max_s: float = 60.0
    timeout_s: float = 120.0
    prices: dict[str, dict[str, Any]] | None = None
    budget_usd: float | None = None
    cache_dir: str | None = None
    thinking_budget: int | None = None
    gemini_api_version: str = "v1beta"
    reasoning_effort: str | None = None
    batch_size: int = 64
    engine_args: dict[str, Any] = field(default_factory=dict)
    extra_body: dict[str, Any] = field(default_factory=dict)
    progress: bool = True
    max_sample_calls: int = 16
    cache_lease_s: float = 60.0
    mode: str = "interactive"
    batch_poll_s: float = 30.0
    batch_poll_max_s: float = 600.0
    batch_max_requests: int | None = None
    batch_max_bytes: int | None = None
    batch_retry: str = "interactive"

    def __post_init__(self) -> None:
        if self.backend not in BACKEND_NAMES:
            raise ValueError(f"backend must be one of {', '.join(BACKEND_NAMES)}, got {self.backend!r}")
        if not self.model:
            raise ValueError(f"backend {self.backend!r} needs a model name (or a model folder)")
        self._check_numbers()
        if self.base_url is not None:
            _check_base_url(self.base_url)
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.mode == "batch" and self.backend not in BATCH_MODE_BACKENDS:
            raise ValueError(f"mode: batch needs a provider batch API (backend {' or '.join(BATCH_MODE_BACKENDS)}), "
                             f"not backend {self.backend!r}")
        if self.batch_retry not in BATCH_RETRY:
            raise ValueError(f"batch_retry must be one of {', '.join(BATCH_RETRY)}, got {self.batch_retry!r}")
        off_words = ("off", "none", "false")
        if self.cache_dir is False or (isinstance(self.cache_dir, str) and self.cache_dir.lower() in off_words):
            self.cache_dir = "off"  # YAML reads a bare `off` as False
        if self.api_key_env is None:
            self.api_key_env = DEFAULT_API_KEY_ENV.get(self.backend)

    def _check_numbers(self) -> None:
        """Each numeric field has its type and range (flags and YAML give strings and negatives)."""
        at_least = {"concurrency": 1, "max_retries": 0, "batch_size": 1, "max_sample_calls": 1,
                    "batch_max_requests": 1, "batch_max_bytes": 1, "thinking_budget": -1}
        for name, low in at_least.items():
            value = getattr(self, name)
            if value is None and name in ("batch_max_requests", "batch_max_bytes", "thinking_budget"):
                continue
            if not _is_int(value) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {_kind(value)}")
        positive = {"timeout_s": False, "cache_lease_s": False, "batch_poll_s": False, "batch_poll_max_s": False,
                    "rpm": True, "tpm": True, "budget_usd": True}
        for name, optional in positive.items():
            value = getattr(self, name)
            if value is None and optional:
                continue
            if not _is_number(value) or not value > 0:
                raise ValueError(f"{name} must be positive{' or None' if optional else ''}, got {_kind(value)}")
        for name in ("retry_initial_s", "retry_max_s"):
            value = getattr(self, name)
            if not _is_number(value) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {_kind(value)}")

    def replace(self, **changes: Any) -> "BackendConfig":
        return dataclasses.replace(self, **changes)

    def required_api_key(self) -> str | None:
        """The environment variable this role cannot call without (an API backend on the provider's
        own endpoint: ``base_url`` unset), else None. The backends refuse to start without it, and
        ``mede2 run`` checks it for every stage before the first one runs."""
        return self.api_key_env if self.base_url is None and self.api_key_env else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy (holds no secret: only the variable's name)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, data: dict[str, Any]) -> "BackendConfig":
        """Hook of the config loader (:mod:`mede2_plugin.core.settings`): build from a mapping."""
        return load_backend_config(data)

    def config_plain(self) -> dict[str, Any]:
        """Hook of the config loader: ``backend``, ``model`` and the fields that differ from that
        backend's defaults, so a later change of ``backend`` also changes what follows from it
        (e.g. the default ``api_key_env``)."""
        reference = BackendConfig(backend=self.backend, model=self.model).to_dict()
        return {k: v for k, v in self.to_dict().items() if k in ("backend", "model") or v != reference[k]}


def is_placeholder_url(url: str | None) -> bool:
    """A single word such as ``simulated``: a placeholder that a pipeline replaces with an address
    before any call (backends refuse to be built with one)."""
    return isinstance(url, str) and re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", url) is not None


def _check_base_url(url: Any) -> None:
    """An http(s) URL with a host (or a placeholder word); ``localhost:8000/v1`` (no scheme) is
    refused, not misread."""
    if is_placeholder_url(url):
        return
    parsed = urllib.parse.urlparse(url) if isinstance(url, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"base_url must be an http(s) URL with a host, such as http://127.0.0.1:8000/v1, "
                         f"got {url!r}")


@dataclass
class ChatRequest:
    """One chat request with a stable id; the unit of every batch.

    Attributes:
        id: stable id of the item (the key of its output row).
        messages: OpenAI-style chat messages; content is a string or a list of ``text`` and
            ``image_url`` parts (data URLs, http(s) URLs, ``file://`` URIs or local paths).
        n: number of samples wanted.
        temperature: sampling temperature (None: the backend's default).
        top_p: nucleus sampling (None: the backend's default).
        max_tokens: most new tokens per sample (None: the backend's default).
        seed: sampling seed where the backend supports one.
        stop: stop strings.
        response_schema: a JSON schema asking for JSON output (Gemini ``response_schema``,
            OpenAI ``response_format`` of type ``json_schema``).
        extra: backend-specific request fields, passed through (OpenAI: ``extra_body`` entries).
    """

    id: str
    messages: list[dict[str, Any]]
    n: int = 1
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: list[str] | None = None
    response_schema: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.id = request_id(self.id)
        where = f"request {self.id!r}"
        check_messages(self.messages, where)
        if not _is_int(self.n) or not 1 <= self.n <= MAX_SAMPLES:
            raise RequestError(f"{where}: n must be an integer from 1 to {MAX_SAMPLES}, got {_kind(self.n)}")
        for name in ("temperature", "top_p"):
            value = getattr(self, name)
            if value is not None and (not _is_number(value) or value < 0):
                raise RequestError(f"{where}: {name} must be a number >= 0 or null, got {_kind(value)}")
        if self.max_tokens is not None and (not _is_int(self.max_tokens) or self.max_tokens < 1):
            raise RequestError(f"{where}: max_tokens must be an integer >= 1 or null, got {_kind(self.max_tokens)}")
        if self.seed is not None and not _is_int(self.seed):
            raise RequestError(f"{where}: seed must be an integer or null, got {_kind(self.seed)}")
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if self.stop is not None and (not isinstance(self.stop, list) or not all(isinstance(s, str) for s in self.stop)):
            raise RequestError(f"{where}: stop must be a string or a list of strings, got {_kind(self.stop)}")
        if self.response_schema is not None and not isinstance(self.response_schema, dict):
            raise RequestError(f"{where}: response_schema must be a JSON object, got {_kind(self.response_schema)}")
        if not isinstance(self.extra, dict):
            raise RequestError(f"{where}: extra must be a JSON object, got {_kind(self.extra)}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ChatRequest":
        """Build from an input line; unknown top-level keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RequestError(f"request {data.get('id')!r}: unknown field(s) {', '.join(unknown)}")
        for name in ("id", "messages"):
            if name not in data:
                raise RequestError(f"a request needs {name!r}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def request_id(value: Any) -> str:
    """The id of a request as a string: a non-empty string, or an integer (``1`` and ``"1"`` are
    the same id). ``null``, booleans, floats and containers are refused, never stringified."""
    if _is_int(value):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value
    raise RequestError(f"'id' must be a non-empty string (or an integer), got {_kind(value)}")


def check_messages(messages: Any, where: str) -> None:
    """OpenAI-style chat messages: a non-empty list of ``{"role", "content"}`` objects with a
    known role, content a string or a list of ``text`` / ``image_url`` parts."""
    if not isinstance(messages, list) or not messages:
        raise RequestError(f"{where}: messages must be a non-empty list, got {_kind(messages)}")
    for number, message in enumerate(messages, start=1):
        at = f"{where}: message {number}"
        if not isinstance(message, dict):
            raise RequestError(f"{at} must be an object with 'role' and 'content', got {_kind(message)}")
        if message.get("role") not in ROLES:
            raise RequestError(f"{at}: role must be one of {', '.join(ROLES)}, got {message.get('role')!r}")
        content = message.get("content")
        if isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise RequestError(f"{at}: content must be a string or a list of parts, got {_kind(content)}")
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                continue
            if kind in ("image_url", "image"):
                value = part.get("image_url") if kind == "image_url" else (part.get("image") or part.get("url"))
                url = value.get("url") if isinstance(value, dict) else value
                if isinstance(url, str) and url:
                    continue
            raise RequestError(f"{at}: a content part must be {{'type': 'text', 'text': ...}} or "
                               f"{{'type': 'image_url', 'image_url': {{'url': ...}}}}, got {str(part)[:120]}")


def load_backend_config(source: str | Path | dict[str, Any], **overrides: Any) -> BackendConfig:
    """A :class:`BackendConfig` from a YAML file or a dict; ``overrides`` (not None) win.

    Unknown keys are an error naming the file and the key. A YAML file may hold the fields at its
    top level or under a ``backend_config:`` key.
    """
    where = "config"
    if isinstance(source, (str, Path)):
        import yaml

        where = str(source)
        with open(source, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected a mapping of BackendConfig fields")
    else:
        data = dict(source)
    if isinstance(data.get("backend_config"), dict):
        data = dict(data["backend_config"])
    for secret_like in ("api_key", "key", "token"):
        if secret_like in data:
            raise ValueError(f"{where}: put secrets in an environment variable and name it with api_key_env")
    known = {f.name for f in dataclasses.fields(BackendConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown BackendConfig field(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(known))}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return BackendConfig(**data)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from None
