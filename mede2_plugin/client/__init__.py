"""The model-calling layer every stage shares: backends, pacing, retries, cache, cost, outputs.

>>> from mede2_plugin.client import BackendConfig, ChatRequest, run_batch
>>> config = BackendConfig(backend="openai", model="gpt-4o", concurrency=8)
>>> summary = run_batch([ChatRequest(id="q1", messages=[...])], "out.jsonl", config, stage="curate")

See :mod:`mede2_plugin.client.batch` for the output rows and
:mod:`mede2_plugin.client.backends.base` for the backend interface.
"""

from mede2_plugin.client.backends.base import (
    Backend,
    BaseBackend,
    Completion,
    Sample,
    SharedBackend,
)
from mede2_plugin.client.batch import (
    BatchSummary,
    arun_batch,
    parse_json_text,
    run_batch,
    usage_totals,
)
from mede2_plugin.client.cache import ResponseCache, cache_key
from mede2_plugin.client.cli import (
    add_backend_arguments,
    backend_config_from_args,
    read_requests,
)
from mede2_plugin.client.config import BackendConfig, ChatRequest, load_backend_config

__all__ = [
    "Backend", "BackendConfig", "BaseBackend", "BatchSummary", "ChatRequest", "Completion", "ResponseCache",
    "Sample", "SharedBackend", "add_backend_arguments", "arun_batch", "backend_config_from_args", "cache_key",
    "load_backend_config", "parse_json_text", "read_requests", "run_batch", "usage_totals",
]
