"""The stages' one call into the client: requests in, result rows by id out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mede2_plugin.client.batch import run_batch
from mede2_plugin.client.config import BackendConfig, ChatRequest


def call_models(requests: Sequence[ChatRequest], output: Path, config: BackendConfig,
                stage: str) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Run ``requests`` through :func:`run_batch` into ``output``; return their rows by id and the summary.

    With no requests nothing is called and no row is returned.
    """
    if not requests:
        return {}, {"stage": stage, "output": str(output), "backend": config.backend, "model": config.model,
                    "total": 0, "calls": 0}
    summary = run_batch(list(requests), output=output, config=config, stage=stage)
    return summary.rows, summary.to_dict()
