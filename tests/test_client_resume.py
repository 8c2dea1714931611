"""Resume, cache, budget and the `mede2 batch` command."""

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
    make_png,
    openai_config,
    raw_rows,
    text_requests,
    write_requests,
)

from mede2_plugin.cli import main as mede2_main
from mede2_plugin.client import (
    BackendConfig,
    ChatRequest,
    ResponseCache,
    cache_key,
    run_batch,
)
from mede2_plugin.client.cli import read_requests
from mede2_plugin.testing import FakeOpenAIServer

REPO_ROOT = Path(__file__).resolve().parents[1]


def batch_argv(requests: Path, output: Path, server: FakeOpenAIServer, concurrency: int = 4) -> list[str]:
    return ["batch", "--input", str(requests), "--output", str(output), "--backend", "openai",
            "--model", "fake-model", "--base-url", server.base_url, "--concurrency", str(concurrency),
            "--cache-dir", str(output.parent / "cache"), "--no-progress"]


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_gives_one_result_per_item(tmp_path):
    count, concurrency = 40, 4
    requests = write_requests(tmp_path / "requests.jsonl", count)
    output = tmp_path / "results.jsonl"
    with FakeOpenAIServer(reply=echo_reply, latency=0.15) as server:
        argv = [sys.executable, "-m", "mede2_plugin.cli", *batch_argv(requests, output, server, concurrency)]
        process = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if output.exists() and len(output.read_bytes().splitlines()) >= 12:
                break
            time.sleep(0.02)
        assert process.poll() is None, process.stderr.read().decode()
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        written_before = len(raw_rows(output))
        assert 12 <= written_before < count
        calls_at_kill = server.answered_count

        resumed = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert resumed.returncode == 0, resumed.stderr
        summary = json.loads(resumed.stdout)
        rows = raw_rows(output)
        ids = [row["id"] for row in rows]
        assert sorted(ids) == sorted(f"item-{i}" for i in range(count))  # exactly one row per item
        assert all(row["error"] is None and row["samples"][0]["text"] == f"echo: question {row['id'][5:]}"
                   for row in rows)
        assert summary["skipped"] == written_before
        # paid twice at most: the calls in flight at the kill (answered but not yet cached)
        assert server.answered_count <= count + concurrency
        assert summary["calls"] + summary["cache_hits"] == count - written_before
        assert calls_at_kill >= written_before

        calls_before_rerun = server.call_count
        again = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        assert server.call_count == calls_before_rerun  # a complete rerun makes zero calls
        assert json.loads(again.stdout)["skipped"] == count
        assert len(raw_rows(output)) == count


def test_rerun_retries_only_failed_ids(tmp_path):
    output = tmp_path / "out.jsonl"
    fail_ids = {"question q1", "question q4"}

    def faults(index, body):
        return "500" if body["messages"][-1]["content"] in fail_ids else None

    with FakeOpenAIServer(reply=echo_reply, faults=faults) as server:
        config = openai_config(server, tmp_path, max_retries=0)
        first = run_batch(text_requests(6), output, config)
        assert (first.succeeded, first.failed, server.call_count) == (4, 2, 6)
        server.faults = None
        second = run_batch(text_requests(6), output, config)
        assert (second.skipped, second.calls, second.succeeded, second.failed) == (4, 2, 6, 0)
        assert sorted(c.body["messages"][-1]["content"] for c in server.calls[6:]) == sorted(fail_ids)
        third = run_batch(text_requests(6), output, config)
        assert third.calls == 0 and server.call_count == 8
    rows = final_rows(output)
    assert all(row["error"] is None for row in rows.values()) and len(rows) == 6
    assert len(raw_rows(output)) == 8  # append-only: the two error rows stay, superseded


def test_cache_hits_across_output_files_and_keys(tmp_path):
    with FakeOpenAIServer(reply=echo_reply) as server:
        config = openai_config(server, tmp_path)
        run_batch(text_requests(5, temperature=0.5), tmp_path / "a.jsonl", config)
        assert server.call_count == 5
        summary = run_batch(text_requests(5, temperature=0.5), tmp_path / "b.jsonl", config, stage="other")
        assert server.call_count == 5 and summary.cache_hits == 5 and summary.calls == 0
        rows = final_rows(tmp_path / "b.jsonl")
        assert all(r["cached"] and r["cost_usd"] == 0.0 and r["stage"] == "other" for r in rows.values())
        assert rows["q2"]["samples"][0]["text"] == "echo: question q2"
        # a different sampling setting or model is a different call
        run_batch(text_requests(5, temperature=0.9), tmp_path / "c.jsonl", config)
        assert server.call_count == 10
        run_batch(text_requests(5, temperature=0.5), tmp_path / "d.jsonl", config.replace(model="other-model"))
        assert server.call_count == 15


def test_cache_key_hashes_image_content_not_its_form(tmp_path):
    image = make_png(tmp_path / "x.png")
    data_url = "data:image/png;base64," + __import__("base64").b64encode(image.read_bytes()).decode()
    other = make_png(tmp_path / "y.png", color=(0, 0, 255))

    def request(url: str) -> ChatRequest:
        return ChatRequest(id="i", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "what?"}]}])

    with FakeOpenAIServer(reply="a finding") as server:
        config = openai_config(server, tmp_path)
        assert cache_key(config, request(str(image))) == cache_key(config, request(data_url))
        assert cache_key(config, request(str(image))) != cache_key(config, request(str(other)))
        run_batch([request(str(image))], tmp_path / "a.jsonl", config)
        summary = run_batch([request(data_url)], tmp_path / "b.jsonl", config)
    assert summary.cache_hits == 1 and server.call_count == 1
    cache_bytes = b"".join(p.read_bytes() for p in (tmp_path / "cache").iterdir())
    assert data_url[30:90].encode() not in cache_bytes  # the image itself is not stored


def test_budget_cap_stops_cleanly_and_resumes(tmp_path):
    prices = {"fake-model": {"input": 0.0, "output": 1_000_000.0}}  # $1 per completion token
    output = tmp_path / "out.jsonl"
    with FakeOpenAIServer(reply="two words") as server:  # 2 completion tokens: $2 per call
        config = openai_config(server, tmp_path, concurrency=1, prices=prices, budget_usd=10.0)
        summary = run_batch(text_requests(12), output, config)
        assert summary.budget_exhausted and summary.cost_usd == pytest.approx(10.0)
        assert (summary.calls, summary.succeeded, summary.not_attempted) == (5, 5, 7)
        assert server.call_count == 5 and len(raw_rows(output)) == 5
        assert all(row["cost_usd"] == pytest.approx(2.0) for row in raw_rows(output))

        more = run_batch(text_requests(12), output, config.replace(budget_usd=100.0, concurrency=4))
        assert not more.budget_exhausted and more.calls == 7 and more.skipped == 5
        assert len(final_rows(output)) == 12


def test_budget_cap_overshoot_is_bounded_by_concurrency(tmp_path):
    prices = {"fake-model": {"input": 0.0, "output": 1_000_000.0}}
    with FakeOpenAIServer(reply="two words", latency=0.05) as server:
        config = openai_config(server, tmp_path, concurrency=4, prices=prices, budget_usd=10.0)
        summary = run_batch(text_requests(40), tmp_path / "out.jsonl", config)
    assert summary.budget_exhausted and 5 <= summary.calls <= 5 + 4
    assert summary.not_attempted == 40 - summary.calls


def test_budget_needs_a_price(tmp_path):
    with FakeOpenAIServer() as server:
        config = openai_config(server, tmp_path, budget_usd=1.0)
        with pytest.raises(ValueError, match="has no price"):
            run_batch(text_requests(1), tmp_path / "out.jsonl", config)
        assert server.call_count == 0


def test_unknown_price_is_reported_as_unknown(tmp_path):
    with FakeOpenAIServer(reply="x") as server:
        summary = run_batch(text_requests(2), tmp_path / "out.jsonl", openai_config(server, tmp_path))
        assert summary.cost_usd is None and "unknown" in summary.line()
        assert all(row["cost_usd"] is None for row in raw_rows(tmp_path / "out.jsonl"))
        priced = run_batch(text_requests(2, prefix="p"), tmp_path / "out2.jsonl",
                           openai_config(server, tmp_path, prices={"fake-model": {"input": 1.0, "output": 2.0}}))
    # the configured price of "fake-model"; prompt 2 words, answer 1 word per call
    assert priced.cost_usd == pytest.approx(2 * (2 * 1.0 + 1 * 2.0) / 1e6)


def test_duplicate_ids_are_rejected(tmp_path):
    with FakeOpenAIServer() as server, pytest.raises(ValueError, match="duplicate request id 'q0'"):
        run_batch(text_requests(2) + text_requests(1), tmp_path / "out.jsonl", openai_config(server, tmp_path))


def test_mede2_batch_command_with_yaml_config_and_images(tmp_path, capsys):
    make_png(tmp_path / "media" / "scan.png")
    requests = tmp_path / "requests.jsonl"
    requests.write_text(
        json.dumps({"id": "a", "messages": [{"role": "user", "content": "describe"}], "images": ["media/scan.png"],
                    "n": 2, "temperature": 0.3}) + "\n"
        + json.dumps({"id": "b", "messages": [{"role": "user", "content": "hello"}]}) + "\n")
    with FakeOpenAIServer(reply=echo_reply) as server:
        config = tmp_path / "backend.yaml"
        config.write_text(f"backend: openai\nmodel: fake-model\nbase_url: {server.base_url}\nconcurrency: 2\n"
                          f"prices:\n  fake-model: {{input: 1.0, output: 1.0}}\ncache_dir: off\n")
        code = mede2_main(["batch", "--input", str(requests), "--output", str(tmp_path / "out.jsonl"),
                           "--config", str(config), "--concurrency", "3", "--no-progress"])
        assert code == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["succeeded"] == 2 and summary["calls"] == 2 and summary["cost_usd"] > 0
        body = next(c.body for c in server.calls if c.body.get("n") == 2)
        assert body["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
        rows = final_rows(tmp_path / "out.jsonl")
        assert len(rows["a"]["samples"]) == 2 and rows["b"]["samples"][0]["text"] == "echo: hello"


def test_mede2_batch_reports_bad_input_line(tmp_path, capsys):
    requests = tmp_path / "requests.jsonl"  # a blank line: the second record is on line 3
    requests.write_text(json.dumps({"id": "a", "messages": [{"role": "user", "content": "x"}]}) + "\n\n"
                        + json.dumps({"id": "b", "mesages": []}) + "\n")
    with pytest.raises(ValueError, match=r"requests.jsonl:3: .*mesages"):
        read_requests(requests)
    code = mede2_main(["batch", "--input", str(requests), "--output", str(tmp_path / "o.jsonl"),
                       "--backend", "openai", "--model", "m", "--base-url", "http://127.0.0.1:9/v1"])
    assert code == 2 and "requests.jsonl:3:" in capsys.readouterr().err


def test_response_cache_survives_reopen(tmp_path):
    from mede2_plugin.client import Completion, Sample

    cache = ResponseCache(tmp_path)
    cache.put("k", Completion(samples=[Sample("t", "r", "stop")], prompt_tokens=3, completion_tokens=1))
    cache.close()
    again = ResponseCache(tmp_path)
    hit = again.get("k")
    assert hit is not None and hit.samples[0].reasoning == "r" and hit.prompt_tokens == 3
    assert again.get("other") is None and len(again) == 1


def test_cache_key_of_in_process_models_follows_the_weights_not_the_path(tmp_path):
    """Retraining into the same folder (or swapping the LoRA adapter) must not serve old answers;
    an API model's key does not depend on any local folder."""
    model, adapter = tmp_path / "m1", tmp_path / "lora"
    for folder in (model, adapter):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"first weights")
    (model / "checkpoint-1").mkdir()
    ask = ChatRequest(id="i", messages=[{"role": "user", "content": "why?"}])
    local = BackendConfig(backend="local", model=str(model), engine_args={"adapter_name_or_path": str(adapter)})
    before = cache_key(local, ask)
    assert cache_key(local, ask) == before
    (model / "checkpoint-1" / "optimizer.pt").write_bytes(b"not read when the model loads")
    assert cache_key(local, ask) == before

    (model / "model.safetensors").write_bytes(b"retrained weights")  # same path, new model
    retrained = cache_key(local, ask)
    assert retrained != before
    as_list = local.replace(engine_args={"adapter_name_or_path": [str(adapter)]})  # YAML list form
    list_key = cache_key(as_list, ask)
    os.utime(adapter / "model.safetensors", ns=(1, 1))  # a new adapter in the same folder
    assert cache_key(local, ask) != retrained
    assert cache_key(as_list, ask) != list_key

    api = BackendConfig(backend="openai", model=str(model), base_url="http://127.0.0.1:1/v1")
    key = cache_key(api, ask)
    (model / "model.safetensors").write_bytes(b"again")
    assert cache_key(api, ask) == key
