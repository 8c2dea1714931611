"""A server that returns fewer samples than asked is asked again a bounded number of times; the
row then holds what came back, says how many are missing and why, and a rerun keeps it."""

from __future__ import annotations

import time

import pytest
from client_helpers import echo_reply, final_rows, openai_config, text_requests

from mede2_plugin.client import BackendConfig, ChatRequest, run_batch
from mede2_plugin.testing import FakeGeminiServer, FakeOpenAIServer


def gemini_config(server, tmp_path, **changes) -> BackendConfig:
    values = dict(backend="gemini", model="gemini-2.5-flash", base_url=server.base_url, max_retries=0,
                  timeout_s=5, progress=False, cache_dir=str(tmp_path / "cache"))
    return BackendConfig(**{**values, **changes})


@pytest.mark.parametrize("provider", ["openai", "gemini"])
def test_huge_n_against_a_server_capping_samples_ends_with_a_short_row(provider, tmp_path):
    """The trap seen: n=1000 against a server returning at most 2 made 299 requests and never ended."""
    server_class = FakeOpenAIServer if provider == "openai" else FakeGeminiServer
    with server_class(reply="an answer", max_samples=2) as server:
        config = (openai_config(server, tmp_path) if provider == "openai" else gemini_config(server, tmp_path))
        began = time.monotonic()
        summary = run_batch([ChatRequest(id="q", messages=[{"role": "user", "content": "hi"}], n=100)],
                            tmp_path / "out.jsonl", config)
        assert time.monotonic() - began < 30
        assert server.call_count == config.max_sample_calls == 16  # bounded
    row = final_rows(tmp_path / "out.jsonl")["q"]
    assert row["error"] is None and len(row["samples"]) == 32
    assert row["short_by"] == 68
    assert row["warning"].startswith("32 of 100 samples: the server returned fewer than asked and 16 calls")
    assert summary.short == 1 and summary.succeeded == 1 and "fewer samples than asked" in summary.line()
    assert row["usage"]["completion_tokens"] == 2 * 32  # every call's samples paid and counted


def test_a_failing_top_up_keeps_the_samples_already_paid(tmp_path):
    with FakeOpenAIServer(reply=echo_reply, max_samples=2, faults=[None, "500"]) as server:
        run_batch(text_requests(1, n=4), tmp_path / "out.jsonl", openai_config(server, tmp_path, max_retries=0))
        assert server.call_count == 2
    row = final_rows(tmp_path / "out.jsonl")["q0"]
    assert [s["text"] for s in row["samples"]] == ["echo: question q0"] * 2
    assert row["short_by"] == 2 and "a further call failed (InternalServerError" in row["warning"]


def test_a_server_honouring_n_gives_a_full_row_without_warning(tmp_path):
    with FakeOpenAIServer(reply=echo_reply) as server:
        run_batch(text_requests(1, n=5), tmp_path / "out.jsonl", openai_config(server, tmp_path))
        assert server.call_count == 1
    row = final_rows(tmp_path / "out.jsonl")["q0"]
    assert len(row["samples"]) == 5 and "short_by" not in row and "warning" not in row


def test_a_short_row_is_kept_on_rerun_and_served_short_from_the_cache(tmp_path):
    with FakeOpenAIServer(reply=echo_reply, max_samples=1) as server:
        config = openai_config(server, tmp_path, max_sample_calls=3)
        run_batch(text_requests(1, n=8), tmp_path / "a.jsonl", config)
        assert server.call_count == 3
        again = run_batch(text_requests(1, n=8), tmp_path / "a.jsonl", config)
        assert again.skipped == 1 and server.call_count == 3  # answered: not asked again
        other = run_batch(text_requests(1, n=8), tmp_path / "b.jsonl", config)
        assert other.cache_hits == 1 and other.short == 1 and server.call_count == 3
    row = final_rows(tmp_path / "b.jsonl")["q0"]
    assert row["cached"] and row["short_by"] == 5 and row["warning"].startswith("3 of 8 samples")
