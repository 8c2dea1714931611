"""The openai SDK against the fake OpenAI-compatible server: faults, retries, samples, images, secrets."""

from __future__ import annotations

import base64
import random
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
)

from mede2_plugin.client import ChatRequest, run_batch
from mede2_plugin.testing import FakeOpenAIServer, Fault
from mede2_plugin.testing.fake_openai import image_urls


def test_every_item_ends_answered_or_explicitly_failed(tmp_path):
    rng = random.Random(7)
    kinds = [None, None, "429", "500", "503", "truncated", "malformed", Fault.timeout(2.0)]
    schedule = [rng.choice(kinds) for _ in range(60)]

    def faults(index, body):  # one prompt always fails; the rest follow the random schedule
        if "question q3" in body["messages"][-1]["content"]:
            return "500"
        return schedule[index] if index < len(schedule) else None

    with FakeOpenAIServer(reply=echo_reply, faults=faults) as server:
        config = openai_config(server, tmp_path, timeout_s=0.6, max_retries=2, concurrency=8)
        summary = run_batch(text_requests(24), tmp_path / "out.jsonl", config)
    rows = final_rows(tmp_path / "out.jsonl")
    assert sorted(rows) == sorted(f"q{i}" for i in range(24))
    for item_id, row in rows.items():
        if row["error"] is None:
            assert len(row["samples"]) == 1 and row["samples"][0]["text"] == f"echo: question {item_id}"
        else:
            assert row["samples"] == [] and row["error"].strip()
    assert "500" in rows["q3"]["error"] and "InternalServerError" in rows["q3"]["error"]
    assert summary.failed == sum(1 for r in rows.values() if r["error"]) >= 1
    assert summary.succeeded + summary.failed == 24
    faults_seen = {c.fault for c in server.calls}
    assert {"429", "500", "truncated", "malformed", "timeout"} <= faults_seen


def test_faults_are_retried_until_answered(tmp_path):
    faults = [Fault.rate_limit(0.05), "500", "503", "truncated", "malformed", Fault.timeout(3.0), None]
    with FakeOpenAIServer(reply=echo_reply, faults=faults) as server:
        config = openai_config(server, tmp_path, concurrency=1, timeout_s=1.0, max_retries=6)
        summary = run_batch(text_requests(1), tmp_path / "out.jsonl", config)
    assert summary.succeeded == 1 and summary.failed == 0 and summary.calls == 1
    assert [c.fault for c in server.calls] == ["429", "500", "503", "truncated", "malformed", "timeout", None]
    assert final_rows(tmp_path / "out.jsonl")["q0"]["samples"][0]["text"] == "echo: question q0"


def test_retry_after_is_honoured(tmp_path):
    # The SDK's own first backoff is at most 0.5 s; a 1.5 s gap can only come from Retry-After.
    with FakeOpenAIServer(reply="fine", faults=[Fault.rate_limit(retry_after=1.5)]) as server:
        summary = run_batch(text_requests(1), tmp_path / "out.jsonl",
                            openai_config(server, tmp_path, concurrency=1))
    assert summary.succeeded == 1
    first, second = server.calls[:2]
    assert first.fault == "429" and second.fault is None
    assert second.started - first.started >= 1.4


def test_retries_exhausted_gives_error_row(tmp_path):
    with FakeOpenAIServer(reply="never", faults=lambda i, body: Fault.rate_limit(0.01)) as server:
        summary = run_batch(text_requests(2), tmp_path / "out.jsonl",
                            openai_config(server, tmp_path, max_retries=2))
    rows = final_rows(tmp_path / "out.jsonl")
    assert summary.failed == 2 and server.call_count == 2 * 3  # first try plus two retries each
    assert all("RateLimitError" in row["error"] and "429" in row["error"] for row in rows.values())


def test_n_samples_reasoning_and_usage(tmp_path):
    def reply(body, index):
        return f"answer {index}", f"because {index}"

    with FakeOpenAIServer(reply=reply) as server:
        requests = [ChatRequest(id="a", messages=[{"role": "user", "content": "one two three"}], n=3,
                                temperature=0.7, max_tokens=50)]
        summary = run_batch(requests, tmp_path / "out.jsonl", openai_config(server, tmp_path))
    row = final_rows(tmp_path / "out.jsonl")["a"]
    assert [s["text"] for s in row["samples"]] == ["answer 0", "answer 1", "answer 2"]
    assert [s["reasoning"] for s in row["samples"]] == ["because 0", "because 1", "because 2"]
    assert row["samples"][0]["finish_reason"] == "stop"
    assert row["usage"] == {"prompt_tokens": 3, "completion_tokens": 12}
    assert summary.prompt_tokens == 3 and summary.completion_tokens == 12
    body = server.calls[0].body
    assert body["n"] == 3 and body["temperature"] == 0.7 and body["max_tokens"] == 50


def test_server_ignoring_n_is_asked_again_for_missing_samples(tmp_path):
    class OneChoiceServer(FakeOpenAIServer):
        def answer(self, body, call_index):
            return super().answer({**body, "n": 1}, call_index)

    with OneChoiceServer(reply=lambda body: "x") as server:
        run_batch([ChatRequest(id="a", messages=[{"role": "user", "content": "hi"}], n=3)],
                  tmp_path / "out.jsonl", openai_config(server, tmp_path))
    assert len(final_rows(tmp_path / "out.jsonl")["a"]["samples"]) == 3
    assert [c.body.get("n", 1) for c in server.calls] == [3, 2, 1]


def test_local_image_paths_become_data_urls_and_schema_becomes_response_format(tmp_path):
    image = make_png(tmp_path / "img" / "scan.png")
    schema = {"type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"]}
    with FakeOpenAIServer(reply='```json\n{"score": 4}\n```') as server:
        request = ChatRequest(id="img", response_schema=schema, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": str(image)}}, {"type": "text", "text": "rate"}]}])
        run_batch([request], tmp_path / "out.jsonl", openai_config(server, tmp_path))
    body = server.calls[0].body
    (url,) = image_urls(body)
    assert url == "data:image/png;base64," + base64.b64encode(image.read_bytes()).decode()
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == schema
    sample = final_rows(tmp_path / "out.jsonl")["img"]["samples"][0]
    assert sample["parsed"] == {"score": 4}


def test_secrets_never_reach_outputs_cache_or_logs(tmp_path, monkeypatch, capfd):
    secret = "sk-test-" + "S3CR3T" * 6
    monkeypatch.setenv("MY_PROVIDER_KEY", secret)
    with FakeOpenAIServer(reply=echo_reply, faults=["500", None, "429"]) as server:
        config = openai_config(server, tmp_path, api_key_env="MY_PROVIDER_KEY", max_retries=0, progress=True)
        summary = run_batch(text_requests(4), tmp_path / "out" / "rows.jsonl", config)
    assert summary.failed >= 1  # error rows were written too
    captured = capfd.readouterr()
    assert secret not in captured.out + captured.err
    assert secret not in repr(config.to_dict()) + repr(summary.to_dict())
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".sqlite3" for p in files) and any(p.name == "rows.jsonl" for p in files)
    for path in files:
        assert secret.encode() not in path.read_bytes(), path
    assert all(c.headers.get("authorization") is None for c in server.calls)  # the log drops it too


def test_missing_api_key_without_base_url_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    from mede2_plugin.client import BackendConfig

    config = BackendConfig(backend="openai", model="gpt-4o", api_key_env="NO_SUCH_KEY_VAR", progress=False,
                           cache_dir="off")
    with pytest.raises(Exception, match="NO_SUCH_KEY_VAR"):
        run_batch(text_requests(1), tmp_path / "out.jsonl", config)


def test_concurrency_is_bounded_and_used(tmp_path):
    active = 0
    peak = 0
    import threading

    lock = threading.Lock()

    def reply(body):
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.1)
        with lock:
            active -= 1
        return "ok"

    with FakeOpenAIServer(reply=reply) as server:
        run_batch(text_requests(24), tmp_path / "out.jsonl", openai_config(server, tmp_path, concurrency=6))
    assert peak == 6
    assert len(raw_rows(tmp_path / "out.jsonl")) == 24


def test_missing_image_fails_only_its_item(tmp_path):
    bad = ChatRequest(id="bad", messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": str(tmp_path / "missing.png")}},
        {"type": "text", "text": "what?"}]}])
    with FakeOpenAIServer(reply="fine") as server:
        for cache_dir in (str(tmp_path / "cache"), "off"):  # found while keying the cache, or while sending
            output = tmp_path / f"out-{cache_dir[-3:]}.jsonl"
            summary = run_batch([bad, *text_requests(2)], output, openai_config(server, tmp_path, cache_dir=cache_dir))
            rows = final_rows(output)
            assert (summary.succeeded, summary.failed) == (2, 1)
            assert "image not found" in rows["bad"]["error"] and "missing.png" in rows["bad"]["error"]
    assert server.call_count == 4


def test_rpm_limit_paces_calls(tmp_path):
    with FakeOpenAIServer(reply="ok") as server:
        summary = run_batch(text_requests(6), tmp_path / "out.jsonl",
                            openai_config(server, tmp_path, concurrency=6, rpm=600))  # one start per 0.1 s
    starts = sorted(c.started for c in server.calls)
    assert summary.succeeded == 6
    # starts leave the client 0.1 s apart; the first call also opens the connection, so its
    # arrival may lag: check the later gaps (with room for arrival jitter on a loaded machine;
    # unpaced, all six arrive within milliseconds) and the whole span
    assert all(b - a >= 0.05 for a, b in zip(starts[1:], starts[2:])), starts
    assert starts[-1] - starts[0] >= 0.35


def test_progress_bar_shows_rate_failures_and_spend(tmp_path, capfd):
    with FakeOpenAIServer(reply="ok", faults=["500"]) as server:
        config = openai_config(server, tmp_path, max_retries=0, progress=True,
                               prices={"fake-model": {"input": 1.0, "output": 1.0}})
        run_batch(text_requests(3), tmp_path / "out.jsonl", config, stage="judge")
    err = capfd.readouterr().err
    assert "judge" in err and "3/3" in err and "req/s" in err
    assert "fail=1" in err and "spend=$0.0000" in err


def test_images_resized_as_in_training_for_a_server_of_a_llamafactory_model(tmp_path):
    """With ``image_max_pixels`` (a vLLM/SGLang server of a model trained with LLaMA-Factory) the
    sent pixels are LLaMA-Factory's resize of the image; without it the file goes as it is; the
    two are different requests to the cache."""
    import io

    from PIL import Image

    from mede2_plugin.core.media import preprocess_image

    big, thin = tmp_path / "big.png", tmp_path / "thin.png"
    Image.effect_noise((400, 300), 64).convert("RGB").save(big)
    Image.new("RGB", (8, 40), (10, 200, 10)).save(thin)

    def request(image: Path) -> ChatRequest:
        return ChatRequest(id=image.stem, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": str(image)}}, {"type": "text", "text": "finding?"}]}])

    def sent_image(call) -> Image.Image:
        (url,) = image_urls(call.body)
        return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))

    resize = {"image_max_pixels": 128 * 128, "model_family": "qwen2_vl"}
    with FakeOpenAIServer(reply="a finding") as server:
        config = openai_config(server, tmp_path, concurrency=1, engine_args=resize)
        run_batch([request(big), request(thin)], tmp_path / "resized.jsonl", config)
        plain = run_batch([request(big)], tmp_path / "plain.jsonl", config.replace(engine_args={}))
    assert plain.calls == 1 and plain.cache_hits == 0  # not answered from the resized request's cache
    sent = {call.index: sent_image(call) for call in server.calls}
    expected_big = preprocess_image(Image.open(big), 128 * 128, family="qwen2_vl")
    assert sent[0].size == expected_big.size == (147, 110)
    assert list(sent[0].getdata()) == list(expected_big.getdata())
    # 8x40 is below image_min_pixels (32*32): scaled up to 14x71, then Qwen2-VL's plugin widens to 28
    assert sent[1].size == preprocess_image(Image.open(thin), 128 * 128, family="qwen2_vl").size == (28, 71)
    assert sent[2].size == (400, 300)
