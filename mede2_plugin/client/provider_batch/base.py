"""What a provider's batch API must offer the runner, and the registry of the two we have.

A provider adapter turns requests into batch entries, uploads and creates batches through the
provider's official SDK, reports a batch's state and reads its results back as
:class:`~mede2_plugin.client.backends.base.Completion` objects. It does not journal, poll, write
rows or decide on retries: :mod:`.runner` does that for both.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from mede2_plugin.client.backends.base import Completion

if TYPE_CHECKING:
    from mede2_plugin.client.config import BackendConfig, ChatRequest

PROVIDERS: dict[str, str] = {
    "openai": "mede2_plugin.client.provider_batch.openai_batches:OpenAIBatches",
    "gemini": "mede2_plugin.client.provider_batch.gemini_batches:GeminiBatches",
}
#: how far back (seconds) listing goes when looking for a batch or file a killed run may have made
LIST_MARGIN_S = 3600.0


@dataclass
class BatchStatus:
    """A batch's state as the provider reports it; ``done``/``total`` items when it says."""

    state: str
    terminal: bool
    done: int | None = None
    total: int | None = None


@dataclass
class BatchResults:
    """The answers of a finished batch by request id; ``errors`` by request id for failed or
    expired items; ``missing`` says why items in neither map got no result (batch failed,
    expired, cancelled)."""

    completions: dict[str, Completion] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    missing: str = "the batch returned no result for it"


class ProviderBatches:
    """One provider's batch API (subclass per provider).

    Attributes:
        uploads: requests go in an uploaded file (:meth:`upload`) rather than inline in :meth:`create`.
        max_requests: most requests in one batch (the provider's limit).
        max_bytes: most bytes of entries in one batch (the provider's limit, less a margin).
    """

    uploads: ClassVar[bool] = False
    max_requests: ClassVar[int] = 50_000
    max_bytes: ClassVar[int] = 100_000_000

    def __init__(self, config: BackendConfig) -> None:
        self.config = config

    async def encode(self, request: ChatRequest) -> tuple[Any, int]:
        """One batch entry for ``request`` and its size in bytes."""
        raise NotImplementedError

    async def upload(self, label: str, entries: list[Any]) -> str:
        """Upload the entries as one input file named after ``label``; returns its id."""
        raise NotImplementedError

    async def find_upload(self, label: str, since: float) -> str | None:
        """The id of an input file uploaded for ``label`` (on or after ``since``), if any."""
        return None

    async def create(self, label: str, source: Any) -> str:
        """Create the batch (``source``: the file id, or the entries when inline); returns its id.
        Called once, never retried automatically: a retry could create a second batch."""
        raise NotImplementedError

    async def find_batch(self, label: str, since: float) -> str | None:
        """The id of a batch created for ``label`` (on or after ``since``), if any."""
        raise NotImplementedError

    async def status(self, batch_id: str) -> BatchStatus:
        raise NotImplementedError

    async def results(self, batch_id: str) -> BatchResults:
        """The results of a batch whose :meth:`status` is terminal."""
        raise NotImplementedError

    async def aclose(self) -> None:
        pass


def create_provider(config: BackendConfig) -> ProviderBatches:
    """The batch adapter of ``config.backend`` (imported now)."""
    try:
        spec = PROVIDERS[config.backend]
    except KeyError:
        raise ValueError(f"backend {config.backend!r} has no provider batch API; "
                         f"mode: batch works with {', '.join(PROVIDERS)}") from None
    module_name, class_name = spec.split(":")
    return getattr(importlib.import_module(module_name), class_name)(config)
