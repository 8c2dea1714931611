"""Runs sharing one response cache pay once per distinct request (claims on keys in flight)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from client_helpers import (
    echo_reply,
    final_rows,
    openai_config,
    text_requests,
    write_requests,
)

from mede2_plugin.client import ResponseCache, run_batch
from mede2_plugin.client.backends.base import Completion, Sample
from mede2_plugin.client.cache import BUSY, CLAIMED, HIT
from mede2_plugin.testing import FakeOpenAIServer, Fault


def batch_process(requests: Path, output: Path, server: FakeOpenAIServer, cache: Path, lease: float = 60.0,
                  ) -> subprocess.Popen:
    """``mede2 batch`` in its own process; its YAML config sets the claim lease."""
    config = output.with_suffix(".yaml")
    config.write_text(json.dumps({"backend": "openai", "model": "fake-model", "base_url": server.base_url,
                                  "concurrency": 8, "cache_dir": str(cache), "cache_lease_s": lease,
                                  "progress": False}))
    argv = [sys.executable, "-m", "mede2_plugin.cli", "batch", "--input", str(requests), "--output", str(output),
            "--config", str(config)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_claim_outcomes_and_takeover(tmp_path):
    cache = ResponseCache(tmp_path / "cache")
    try:
        assert cache.claim("k", "run-a", 60)[0] == CLAIMED
        assert cache.claim("k", "run-b", 60)[0] == BUSY  # a live claim of another run
        assert cache.claim("k", "run-a", 60)[0] == BUSY  # and the same run's second request with that key
        cache.release("run-a", "k")  # a failed call gives the key up
        assert cache.claim("k", "run-b", 0.2)[0] == CLAIMED
        time.sleep(0.3)  # run-b's lease ran out without a renewal: taken over
        assert cache.claim("k", "run-c", 60)[0] == CLAIMED
        cache.put("k", Completion(samples=[Sample("x")], prompt_tokens=1, completion_tokens=1))
        state, hit = cache.claim("k", "run-d", 60)
        assert state == HIT and hit.samples[0].text == "x"
    finally:
        cache.close()


def test_two_runs_in_one_process_pay_once(tmp_path):
    with FakeOpenAIServer(reply=echo_reply, latency=0.3) as server:
        config = openai_config(server, tmp_path, concurrency=8)
        summaries = {}

        def run(name: str) -> None:
            summaries[name] = run_batch(text_requests(8), tmp_path / f"{name}.jsonl", config)

        threads = [threading.Thread(target=run, args=(name,)) for name in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert server.call_count == 8  # each distinct request paid once
    assert summaries["a"].calls + summaries["b"].calls == 8
    assert summaries["a"].cache_hits + summaries["b"].cache_hits == 8
    for name in ("a", "b"):
        rows = final_rows(tmp_path / f"{name}.jsonl")
        assert sorted(rows) == sorted(f"q{i}" for i in range(8))
        assert all(r["error"] is None and r["samples"][0]["text"] == f"echo: question {i}" for i, r in rows.items())


@pytest.mark.slow
def test_processes_sharing_a_cache_pay_once_per_request(tmp_path):
    count, runs = 12, 3
    requests = write_requests(tmp_path / "requests.jsonl", count)
    with FakeOpenAIServer(reply=echo_reply, latency=0.5) as server:
        processes = [batch_process(requests, tmp_path / f"out{i}.jsonl", server, tmp_path / "cache")
                     for i in range(runs)]
        results = [p.communicate(timeout=120) for p in processes]
        for process, (stdout, stderr) in zip(processes, results):
            assert process.returncode == 0, stderr
        prompts = [c.body["messages"][-1]["content"] for c in server.calls]
        assert sorted(prompts) == sorted(f"question {i}" for i in range(count))  # each paid exactly once
    summaries = [json.loads(stdout) for stdout, _ in results]
    assert sum(s["calls"] for s in summaries) == count
    assert sum(s["cache_hits"] for s in summaries) == count * (runs - 1)
    for i in range(runs):
        rows = final_rows(tmp_path / f"out{i}.jsonl")
        assert len(rows) == count and all(r["error"] is None for r in rows.values())
        assert all(r["samples"][0]["text"] == f"echo: question {k[5:]}" for k, r in rows.items())


def slow_first_call_of(prompt: str, seconds: float):
    seen = []

    def faults(index, body):
        if body["messages"][-1]["content"] == prompt and not seen:
            seen.append(index)
            return Fault.latency(seconds)
        return None

    return faults


@pytest.mark.slow
@pytest.mark.parametrize("how", ["kill", "stop"])
def test_a_killed_or_frozen_owner_is_taken_over_and_only_its_call_repeated(tmp_path, how):
    """kill -9: the owner's process is gone, its claim is taken over at once; SIGSTOP: the owner
    lives on but stops renewing, so the waiter takes over when the lease runs out."""
    count, lease = 6, 2.0
    requests = write_requests(tmp_path / "requests.jsonl", count)
    with FakeOpenAIServer(reply=echo_reply, faults=slow_first_call_of("question 3", 60)) as server:
        owner = batch_process(requests, tmp_path / "a.jsonl", server, tmp_path / "cache", lease)
        waiter = None
        try:
            wait_for(lambda: server.call_count >= count)  # every call made, question 3 hanging
            waiter = batch_process(requests, tmp_path / "b.jsonl", server, tmp_path / "cache", lease)
            time.sleep(3 * lease)  # the waiter waits while the owner renews its claim
            assert server.call_count == count and waiter.poll() is None
            stopped_at = time.monotonic()
            os.kill(owner.pid, signal.SIGKILL if how == "kill" else signal.SIGSTOP)
            stdout, stderr = waiter.communicate(timeout=60)
            took_over_after = time.monotonic() - stopped_at
            assert waiter.returncode == 0, stderr
        finally:
            owner.kill()
            owner.wait()
            if waiter is not None and waiter.poll() is None:
                waiter.kill()
        prompts = [c.body["messages"][-1]["content"] for c in server.calls]
    assert sorted(prompts) == sorted([f"question {i}" for i in range(count)] + ["question 3"])
    summary = json.loads(stdout)
    assert (summary["calls"], summary["cache_hits"], summary["succeeded"]) == (1, count - 1, count)
    if how == "stop":
        assert took_over_after >= lease - 0.5  # not before the lease ran out
    rows = final_rows(tmp_path / "b.jsonl")
    assert rows["item-3"]["samples"][0]["text"] == "echo: question 3" and not rows["item-3"]["cached"]
