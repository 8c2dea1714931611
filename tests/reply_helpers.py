"""Literal provider replies -> the samples every reader gets, through the real SDKs and backends.

A table row holds a reply exactly as the provider's API returns it: an OpenAI-compatible *choice*
(``{"message": {"role", "content", "reasoning_content" | "reasoning"}, "finish_reason"}``:
OpenAI, DeepSeek, vLLM, SGLang) or a Gemini *candidate* (``{"content": {"role": "model",
"parts": [{"text", "thought"}]}, "finishReason"}``). :func:`provider_samples` serves each through
the local fake server of its wire format, calls it with :func:`mede2_plugin.client.run_batch`
(openai SDK / google-genai and our backends), and returns the rows ``run_batch`` stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mede2_plugin.client import BackendConfig, ChatRequest, run_batch
from mede2_plugin.core.jsonl import read_jsonl
from mede2_plugin.testing import FakeGeminiServer, FakeOpenAIServer, prompt_text

KEY = "reply-key:"


def msg(content: str | None, finish: str = "stop", **fields: Any) -> dict[str, Any]:
    """An OpenAI-compatible choice as the API returns it (``fields``: reasoning_content / reasoning)."""
    return {"index": 0, "message": {"role": "assistant", "content": content, **fields}, "finish_reason": finish}


def parts(*items: tuple[str, bool]) -> dict[str, Any]:
    """A Gemini candidate as the API returns it, from ``(text, thought)`` parts."""
    return {"content": {"role": "model", "parts": [{"text": t, "thought": True} if thought else {"text": t}
                                                   for t, thought in items]}, "finishReason": "STOP", "index": 0}


def _key(body: dict[str, Any]) -> str:
    text = prompt_text(body) if "messages" in body else "\n".join(
        p.get("text", "") for c in body.get("contents", []) for p in c.get("parts", []))
    return text.split(KEY, 1)[1].split()[0]


def _gemini_reply(candidate: dict[str, Any]) -> tuple[str, str | None]:
    """The fake Gemini server's ``(text, thought)`` for a literal candidate: it sends the thought as
    one ``thought: true`` part before one text part; several parts of each kind arrive joined,
    which is how the backend reads them anyway."""
    parts = candidate["content"]["parts"]
    kinds = [bool(p.get("thought")) for p in parts]
    assert kinds == sorted(kinds, reverse=True), "thought parts come before the answer parts"
    assert candidate.get("finishReason", "STOP") == "STOP", "the fake Gemini server finishes with STOP"
    thought = "".join(p["text"] for p in parts if p.get("thought"))
    return "".join(p["text"] for p in parts if not p.get("thought")), thought or None


def provider_samples(replies: dict[str, dict[str, Any]], folder: Path,
                     schema: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """``{key: results row}`` for literal replies ``{key: choice | candidate}`` (see module doc).

    ``schema`` is sent as the requests' response schema (the row's samples then hold ``parsed``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    openai = {k: v for k, v in replies.items() if "message" in v}
    gemini = {k: v for k, v in replies.items() if "message" not in v}
    rows: dict[str, dict[str, Any]] = {}
    servers = ((FakeOpenAIServer(reply=lambda body: openai[_key(body)]), openai, "openai"),
               (FakeGeminiServer(reply=lambda body: _gemini_reply(gemini[_key(body)])), gemini, "gemini"))
    for server, table, backend in servers:
        if not table:
            continue
        requests = [ChatRequest(id=key, messages=[{"role": "user", "content": f"{KEY}{key} Answer."}],
                                n=1, max_tokens=4096, response_schema=schema) for key in table]
        output = folder / f"{backend}.results.jsonl"
        with server:
            config = BackendConfig(backend=backend, model=f"{backend}-model", base_url=server.base_url,
                                   max_retries=0, progress=False, cache_dir="off", api_key_env="MEDE2_TEST_UNUSED_KEY",
                                   thinking_budget=1024 if backend == "gemini" else None)
            summary = run_batch(requests, output=output, config=config, stage="test")
        assert summary.failed == 0, list(read_jsonl(output))
        rows.update({row["id"]: row for row in read_jsonl(output)})
    return rows
