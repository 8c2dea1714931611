"""Small helpers for the client-layer tests (tests/test_client_*.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mede2_plugin.client import BackendConfig, ChatRequest


def make_png(path: Path, color: tuple[int, int, int] = (200, 30, 30), size: int = 16) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), color).save(path)
    return path


def text_requests(count: int, prefix: str = "q", **fields: Any) -> list[ChatRequest]:
    return [ChatRequest(id=f"{prefix}{i}", messages=[{"role": "user", "content": f"question {prefix}{i}"}], **fields)
            for i in range(count)]


def write_requests(path: Path, count: int) -> Path:
    """A ``mede2 batch`` input file of ``count`` text requests ``item-0`` ... (for the CLI tests)."""
    path.write_text("".join(json.dumps({"id": f"item-{i}", "messages": [{"role": "user", "content": f"question {i}"}],
                                        "max_tokens": 16}) + "\n" for i in range(count)), encoding="utf-8")
    return path


def echo_reply(body: dict[str, Any]) -> str:
    """Answers with the last user text, so each row can be checked against its request."""
    content = body["messages"][-1]["content"]
    if isinstance(content, list):
        content = " ".join(p.get("text", "") for p in content if p.get("type") == "text")
    return f"echo: {content}"


def openai_config(server: Any, tmp_path: Path, **changes: Any) -> BackendConfig:
    values: dict[str, Any] = dict(backend="openai", model="fake-model", base_url=server.base_url,
                                  concurrency=4, max_retries=3, timeout_s=5, progress=False,
                                  cache_dir=str(tmp_path / "cache"))
    values.update(changes)
    return BackendConfig(**values)


def raw_rows(path: Path) -> list[dict[str, Any]]:
    """Every line of a results file, in order (not deduplicated)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def final_rows(path: Path) -> dict[str, dict[str, Any]]:
    """The last row per id, as JsonlStore reads it."""
    rows: dict[str, dict[str, Any]] = {}
    for row in raw_rows(path):
        rows[row["id"]] = row
    return rows
