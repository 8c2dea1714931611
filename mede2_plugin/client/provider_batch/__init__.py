"""Provider batch APIs (``mode: batch``): the OpenAI Batch API and Gemini batch mode.

A role whose :class:`~mede2_plugin.client.config.BackendConfig` says ``mode: batch`` is answered
through its provider's batch API, billed at about half the interactive price and answered within
the provider's window (24 h) instead of at once. :func:`~mede2_plugin.client.run_batch` is the
same call: the answers land in the same JSONL output and response cache, at the batch price, so
stages cannot tell the difference.

* :mod:`.runner` - journal, submit, poll, collect, retry (provider-neutral).
* :mod:`.journal` - ``<output>.batches.json``: which requests are in which batch, written before
  the batch is created, so a killed run resumes the same batches and never submits a request twice.
* :mod:`.base` - what a provider adapter offers; :mod:`.openai_batches`, :mod:`.gemini_batches`
  through the official SDKs.
"""

from mede2_plugin.client.provider_batch.base import (
           BatchResults,
           BatchStatus,
           ProviderBatches,
           create_provider,
)
from mede2_plugin.client.provider_batch.journal import BatchJournal, journal_path
from mede2_plugin.client.provider_batch.runner import run_provider_batches

__all__ = ["BatchJournal", "BatchResults", "BatchStatus", "ProviderBatches", "create_provider", "journal_path",
           "run_provider_batches"]
