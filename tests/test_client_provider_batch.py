"""``mode: batch``: the OpenAI Batch API and Gemini batch mode through the real SDKs, against the
fake servers' batch and file endpoints; limits, retries, prices, restarts and kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from client_helpers import (
    echo_reply,
    final_rows,
    raw_rows,
    text_requests,
    write_requests,
)

from mede2_plugin.client import BackendConfig, ChatRequest, run_batch
from mede2_plugin.client.cost import call_cost, price_for
from mede2_plugin.client.provider_batch import journal_path
from mede2_plugin.testing import FakeGeminiServer, FakeOpenAIServer

MODELS = {"openai": "gpt-4o", "gemini": "gemini-2.5-flash"}


def gemini_echo(body):
    return "echo: " + body["contents"][-1]["parts"][-1]["text"]


def fake_server(provider: str, **kwargs):
    if provider == "openai":
        return FakeOpenAIServer(reply=echo_reply, **kwargs)
    return FakeGeminiServer(reply=gemini_echo, **kwargs)


def batch_config(server, tmp_path: Path, provider: str, **changes) -> BackendConfig:
    values = dict(backend=provider, model=MODELS[provider], base_url=server.base_url, mode="batch",
                  batch_poll_s=0.05, batch_poll_max_s=0.2, max_retries=1, timeout_s=10, progress=False,
                  cache_dir=str(tmp_path / "cache"))
    return BackendConfig(**{**values, **changes})


def chat_calls(server) -> int:
    """Interactive calls the server answered (batch and file requests are not counted there)."""
    return server.call_count


@pytest.mark.parametrize("provider", ["openai", "gemini"])
def test_batch_rows_match_interactive_ones_at_the_batch_price(provider, tmp_path):
    requests = text_requests(5, max_tokens=16) + [ChatRequest(id="two", messages=[
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "question two"}], n=2)]
    with fake_server(provider, batch_delay=0.2) as server:
        config = batch_config(server, tmp_path, provider)
        summary = run_batch(requests, tmp_path / "batch.jsonl", config)
        assert len(server.book.batches) == 1 and chat_calls(server) == 0  # one batch, no interactive call
        assert dict(server.book.answered) == {r.id: 1 for r in requests}
        run_batch(requests, tmp_path / "interactive.jsonl",
                  config.replace(mode="interactive", cache_dir=str(tmp_path / "other-cache")))
        assert chat_calls(server) == len(requests)
        cached = run_batch(requests, tmp_path / "cached.jsonl", config.replace(mode="interactive"))
        assert cached.cache_hits == len(requests) and chat_calls(server) == len(requests)  # the batch filled the cache
    assert (summary.succeeded, summary.failed, summary.batches, summary.calls) == (6, 0, 1, 6)
    batch_rows, live_rows = final_rows(tmp_path / "batch.jsonl"), final_rows(tmp_path / "interactive.jsonl")
    batch_price, price = price_for(config.model, mode="batch"), price_for(config.model)
    for request_id, row in batch_rows.items():
        live = live_rows[request_id]
        assert set(row) - set(live) == {"batch_id"} and row["batch_id"] in {f"batches/{b}" for b in server.book.batches} | set(server.book.batches)
        assert row["samples"] == live["samples"] and row["usage"] == live["usage"]
        usage = row["usage"]
        assert row["cost_usd"] == pytest.approx(call_cost(usage["prompt_tokens"], usage["completion_tokens"], batch_price))
        assert live["cost_usd"] == pytest.approx(call_cost(usage["prompt_tokens"], usage["completion_tokens"], price))
        assert row["cost_usd"] == pytest.approx(live["cost_usd"] / 2)
    assert [s["text"] for s in batch_rows["two"]["samples"]] == ["echo: question two"] * 2
    journal = json.loads(journal_path(tmp_path / "batch.jsonl").read_text())
    (entry,) = journal["batches"]
    assert entry["state"] == "collected" and sorted(entry["ids"]) == sorted(r.id for r in requests)
    assert entry["answered"] == 6 and entry["retried"] == 0


@pytest.mark.parametrize("provider", ["openai", "gemini"])
def test_split_by_request_and_byte_limits(provider, tmp_path):
    with fake_server(provider) as server:
        run_batch(text_requests(7), tmp_path / "a.jsonl", batch_config(server, tmp_path, provider, batch_max_requests=3))
        assert [len(b.items) for b in server.book.batches.values()] == [3, 3, 1]
        server.book.batches.clear()
        long = [ChatRequest(id=f"l{i}", messages=[{"role": "user", "content": f"{i} " + "x" * 3000}]) for i in range(4)]
        run_batch(long, tmp_path / "b.jsonl", batch_config(server, tmp_path, provider, batch_max_bytes=7000))
        assert [len(b.items) for b in server.book.batches.values()] == [2, 2]  # ~3.1 KB each, 7 KB per batch
    assert len(final_rows(tmp_path / "a.jsonl")) == 7 and len(final_rows(tmp_path / "b.jsonl")) == 4


@pytest.mark.parametrize("provider", ["openai", "gemini"])
@pytest.mark.parametrize("retry", ["interactive", "batch", "fail"])
def test_failed_and_expired_items_are_retried_as_configured(provider, retry, tmp_path):
    def item_faults(key, body):
        return "400" if key == "q1" else None

    def expires(batch_number, key):  # in the first batch only; Gemini expires a batch whole
        return batch_number == 0 and (key == "q2" or provider == "gemini")

    with fake_server(provider, batch_faults=item_faults if provider == "openai" else None,
                     batch_expires=expires) as server:
        config = batch_config(server, tmp_path, provider, batch_retry=retry)
        summary = run_batch(text_requests(4), tmp_path / "out.jsonl", config)
        retried = {"q1", "q2"} if provider == "openai" else {"q0", "q1", "q2", "q3"}
        rows = final_rows(tmp_path / "out.jsonl")
        if retry == "interactive":
            assert len(server.book.batches) == 1 and chat_calls(server) == len(retried)
            assert sorted(c.body["messages"][-1]["content"] if provider == "openai" else c.body["contents"][-1]["parts"][-1]["text"]
                          for c in server.calls) == sorted(f"question {i}" for i in retried)
            assert all(r["error"] is None for r in rows.values())
            assert all(("batch_id" in r) == (i not in retried) for i, r in rows.items())  # priced as they went
        elif retry == "batch":
            assert chat_calls(server) == 0 and len(server.book.batches) == 2
            second = list(server.book.batches.values())[1]
            assert sorted(key for key, _ in second.items) == sorted(retried)
            assert rows["q0"]["error"] is None and rows["q2"]["error"] is None
        else:
            assert chat_calls(server) == 0 and len(server.book.batches) == 1
            assert {i for i, r in rows.items() if r["error"]} == retried
            assert summary.failed == len(retried)
            if provider == "openai":
                assert "HTTP 400" in rows["q1"]["error"] and "batch_expired" in rows["q2"]["error"]
            rerun = run_batch(text_requests(4), tmp_path / "out.jsonl", config)  # a rerun asks again
            assert rerun.skipped == 4 - len(retried) and rerun.batches == 1
    if retry == "batch" and provider == "openai":  # the 400 fails again in the second batch
        assert rows["q1"]["error"] and "HTTP 400" in rows["q1"]["error"]


def test_progress_line_shows_batches_states_and_items(tmp_path, capfd):
    with fake_server("openai", batch_delay=0.3) as server:
        run_batch(text_requests(5), tmp_path / "out.jsonl",
                  batch_config(server, tmp_path, "openai", progress=True, batch_max_requests=2))
    err = capfd.readouterr().err
    assert "[batch] batches: 3 (3 in_progress); items done 0/5" in err
    assert "[batch] batches: 3 (3 completed); items done 5/5" in err


def test_budget_caps_what_is_submitted(tmp_path):
    with fake_server("openai") as server:
        price = price_for("gpt-4o", mode="batch")
        one = call_cost(3, 16, price)  # estimate of one request: ~3 prompt tokens, max_tokens 16
        config = batch_config(server, tmp_path, "openai", budget_usd=one * 4.5)
        summary = run_batch(text_requests(10, max_tokens=16), tmp_path / "out.jsonl", config)
        assert sum(len(b.items) for b in server.book.batches.values()) == 4
    assert (summary.succeeded, summary.not_attempted, summary.budget_exhausted) == (4, 6, True)


def test_short_batch_answers_say_so(tmp_path):
    with fake_server("openai", max_samples=2) as server:
        run_batch(text_requests(1, n=3), tmp_path / "out.jsonl", batch_config(server, tmp_path, "openai"))
    row = final_rows(tmp_path / "out.jsonl")["q0"]
    assert len(row["samples"]) == 2 and row["short_by"] == 1 and "the batch returned fewer" in row["warning"]


def test_fake_openai_batch_and_file_endpoints_through_the_sdk():
    import openai

    with FakeOpenAIServer(reply="ok", batch_delay=30) as server:
        client = openai.OpenAI(api_key="unused", base_url=server.base_url, max_retries=0)
        lines = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                  "body": {"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]}} for i in range(3)]
        uploaded = client.files.create(file=("in.jsonl", "".join(json.dumps(x) + "\n" for x in lines).encode()),
                                       purpose="batch")
        assert [f.filename for f in client.files.list(purpose="batch")] == ["in.jsonl"]
        assert client.files.content(uploaded.id).text.count("custom_id") == 3
        batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                      completion_window="24h", metadata={"k": "v"})
        assert client.batches.retrieve(batch.id).status == "in_progress"
        assert [b.metadata for b in client.batches.list()] == [{"k": "v"}]
        cancelled = client.batches.cancel(batch.id)
        assert cancelled.status == "cancelled" and cancelled.output_file_id is None
        errors = [json.loads(x) for x in client.files.content(cancelled.error_file_id).text.splitlines()]
        assert [e["error"]["code"] for e in errors] == ["batch_cancelled"] * 3
        assert client.files.delete(uploaded.id).deleted
        with pytest.raises(openai.NotFoundError):
            client.batches.retrieve("batch_missing")
        duplicate = client.files.create(file=("dup.jsonl", (json.dumps(lines[0]) + "\n") * 2), purpose="batch")
        failed = client.batches.create(input_file_id=duplicate.id, endpoint="/v1/chat/completions",
                                       completion_window="24h")
        assert failed.status == "failed" and "duplicate custom_id" in failed.errors.data[0].message
        assert dict(server.book.answered) == {}  # nothing was answered


def test_fake_gemini_batch_endpoints_through_the_sdk():
    from google import genai
    from google.genai import errors, types

    with FakeGeminiServer(reply="ok", batch_delay=30) as server:
        client = genai.Client(api_key="unused", http_options=types.HttpOptions(base_url=server.base_url,
                                                                              api_version="v1beta"))
        entries = [types.InlinedRequest(contents=f"q{i}", metadata={"key": f"r{i}"}) for i in range(2)]
        job = client.batches.create(model="gemini-2.5-flash", src=entries, config={"display_name": "mine"})
        assert client.batches.get(name=job.name).state.name == "JOB_STATE_RUNNING"
        assert [j.display_name for j in client.batches.list()] == ["mine"]
        client.batches.cancel(name=job.name)
        assert client.batches.get(name=job.name).state.name == "JOB_STATE_CANCELLED"
        client.batches.delete(name=job.name)
        with pytest.raises(errors.ClientError):
            client.batches.get(name=job.name)
        assert list(client.batches.list()) == [] and len(server.book.batches) == 1


# -- restarts: kill -9 at each step, then a rerun ---------------------------------------------
def cli(tmp_path: Path, server, provider: str) -> list[str]:
    config = tmp_path / "backend.json"  # YAML is a superset of JSON
    config.write_text(json.dumps({"backend": provider, "model": MODELS[provider], "base_url": server.base_url,
                                  "mode": "batch", "batch_poll_s": 0.2, "batch_poll_max_s": 0.4,
                                  "cache_dir": str(tmp_path / "cache"), "progress": False}))
    return [sys.executable, "-m", "mede2_plugin.cli", "batch", "--input", str(tmp_path / "requests.jsonl"),
            "--output", str(tmp_path / "out.jsonl"), "--config", str(config)]


def wait_for(condition, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


KILL_POINTS = [  # (provider, where, what the fake server holds or waits for)
    ("openai", "after upload"), ("openai", "after create"), ("openai", "while polling"),
    ("openai", "during the result download"),
    ("gemini", "after create"), ("gemini", "while polling"), ("gemini", "during the result download"),
]


@pytest.mark.slow
@pytest.mark.parametrize("provider,where", KILL_POINTS, ids=[f"{p}: {w}" for p, w in KILL_POINTS])
def test_kill_9_then_rerun_answers_every_item_once_in_one_batch(provider, where, tmp_path):
    count = 6
    write_requests(tmp_path / "requests.jsonl", count)
    with fake_server(provider, batch_delay=1.0) as server:
        argv = cli(tmp_path, server, provider)
        if where == "after upload":
            server.hold("upload", "after")  # the file is stored; the client never hears its id
        elif where == "after create":
            server.hold("create", "after")  # the batch exists; the client never hears its id
        elif where == "during the result download":
            server.hold("download", "after")
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            if where == "while polling":
                wait_for(lambda: server.event_count("get") >= 2, process)
            else:
                wait_for(server.held.is_set, process)
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        finally:
            if process.poll() is None:
                process.kill()
            server.release()
        rows_before = len(raw_rows(tmp_path / "out.jsonl")) if (tmp_path / "out.jsonl").exists() else 0
        rerun = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr
        assert len(server.book.batches) == 1  # no second batch: the rerun found or resumed the first
        assert dict(server.book.answered) == {f"item-{i}": 1 for i in range(count)}  # every item answered once
        assert server.call_count == 0  # and never interactively
        if provider == "openai":
            assert sum(1 for f in server.book.files.values() if f.purpose == "batch") == 1  # one upload
    summary = json.loads(rerun.stdout)
    assert summary["batches"] == (1 if where == "after upload" else 0)  # created by the rerun, or found
    assert summary["succeeded"] == count
    rows = raw_rows(tmp_path / "out.jsonl")
    assert rows_before == 0 and sorted(r["id"] for r in rows) == [f"item-{i}" for i in range(count)]
    assert all(r["error"] is None and r["samples"][0]["text"] == f"echo: question {r['id'][5:]}" for r in rows)
    (entry,) = json.loads(journal_path(tmp_path / "out.jsonl").read_text())["batches"]
    assert entry["state"] == "collected" and entry["answered"] == count
