"""Declarative settings of the client layer: which backend, how fast, how much it may cost.

:class:`BackendConfig` says where calls go and how they are paced; :class:`ChatRequest` is one
OpenAI-style chat request with a stable id. Both are plain dataclasses; a YAML file with the same
field names loads through :func:`load_backend_config`. Secrets never live here: ``api_key_env``
only names the environment variable that holds the key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BACKEND_NAMES = ("openai", "gemini", "vllm", "local")
DEFAULT_API_KEY_ENV = {"openai": "OPENAI_API_KEY", "gemini": "GEMINI_API_KEY"}


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
        prices: USD per million tokens by model, ``{model: {"input": x, "output": y}}``; merged
            over the built-in table in :mod:`mede2_plugin.client.cost`. A model without a price has
            cost ``None`` ("unknown") in outputs.
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
    prices: dict[str, dict[str, float]] | None = None
    budget_usd: float | None = None
    cache_dir: str | None = None
    thinking_budget: int | None = None
    gemini_api_version: str = "v1beta"
    reasoning_effort: str | None = None
    batch_size: int = 64
    engine_args: dict[str, Any] = field(default_factory=dict)
    extra_body: dict[str, Any] = field(default_factory=dict)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.backend not in BACKEND_NAMES:
            raise ValueError(f"backend must be one of {', '.join(BACKEND_NAMES)}, got {self.backend!r}")
        if not self.model:
            raise ValueError(f"backend {self.backend!r} needs a model name (or a model folder)")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        for name in ("rpm", "tpm", "budget_usd"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive or None, got {value}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        off_words = ("off", "none", "false")
        if self.cache_dir is False or (isinstance(self.cache_dir, str) and self.cache_dir.lower() in off_words):
            self.cache_dir = "off"  # YAML reads a bare `off` as False
        if self.api_key_env is None:
            self.api_key_env = DEFAULT_API_KEY_ENV.get(self.backend)

    def replace(self, **changes: Any) -> "BackendConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy (holds no secret: only the variable's name)."""
        return dataclasses.asdict(self)


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
        self.id = str(self.id)
        if not isinstance(self.messages, list) or not self.messages:
            raise ValueError(f"request {self.id!r}: messages must be a non-empty list")
        if self.n < 1:
            raise ValueError(f"request {self.id!r}: n must be >= 1, got {self.n}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ChatRequest":
        """Build from an input line; unknown top-level keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"request {data.get('id')!r}: unknown field(s) {', '.join(unknown)}")
        if "id" not in data or "messages" not in data:
            raise ValueError("a request needs 'id' and 'messages'")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
