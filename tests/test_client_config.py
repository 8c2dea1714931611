"""Configuration, CLI flags, prices, limits and image handling of the client layer (no servers)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import time

import pytest
from client_helpers import make_png

from mede2_plugin.client import (
    BackendConfig,
    ChatRequest,
    add_backend_arguments,
    backend_config_from_args,
    load_backend_config,
)
from mede2_plugin.client.backends.base import BACKENDS, BaseBackend, backend_class
from mede2_plugin.client.cost import Budget, call_cost, price_for
from mede2_plugin.client.limits import RateLimiter, estimate_tokens
from mede2_plugin.core.media import (
    content_hash,
    map_image_urls,
    split_messages,
    to_data_url,
    to_pil,
)


def test_yaml_config_and_overrides(tmp_path):
    path = tmp_path / "judge.yaml"
    path.write_text("backend: gemini\nmodel: gemini-2.5-pro\nconcurrency: 16\nrpm: 120\n"
                    "prices:\n  gemini-2.5-pro: {input: 1.25, output: 10}\nthinking_budget: 1024\n")
    config = load_backend_config(path, concurrency=4, rpm=None)
    assert (config.backend, config.model, config.concurrency, config.rpm) == ("gemini", "gemini-2.5-pro", 4, 120)
    assert config.api_key_env == "GEMINI_API_KEY" and config.thinking_budget == 1024
    nested = load_backend_config({"backend_config": {"backend": "openai", "model": "m"}})
    assert nested.api_key_env == "OPENAI_API_KEY"


@pytest.mark.parametrize("text, message", [
    ("backend: openai\nmodel: m\nconcurency: 3\n", "unknown BackendConfig field.*concurency"),
    ("backend: openai\nmodel: m\napi_key: sk-123\n", "environment variable"),
    ("backend: claude\nmodel: m\n", "backend must be one of"),
    ("backend: openai\n", "needs a model"),
    ("backend: openai\nmodel: m\nrpm: -1\n", "rpm must be positive"),
    ("backend: openai\nmodel: m\ntimeout_s: -1\n", "timeout_s must be positive, got -1"),
    ("backend: openai\nmodel: m\nconcurrency: '3'\n", "concurrency must be an integer >= 1, got '3'"),
    ("backend: openai\nmodel: m\nbase_url: localhost:8000/v1\n", "base_url must be an http\\(s\\) URL"),
    ("backend: openai\nmodel: m\nbase_url: ftp://host/v1\n", "base_url must be an http\\(s\\) URL"),
    ("backend: openai\nmodel: m\nmode: bulk\n", "mode must be one of interactive, batch"),
    ("backend: local\nmodel: m\nmode: batch\n", "mode: batch needs a provider batch API"),
    ("backend: openai\nmodel: m\nbatch_retry: never\n", "batch_retry must be one of"),
])
def test_bad_config_names_file_and_problem(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        load_backend_config(path)
    assert "bad.yaml" in str(info.value)


def test_prefixed_backend_arguments(tmp_path):
    yaml_path = tmp_path / "judge.yaml"
    yaml_path.write_text("backend: gemini\nmodel: from-yaml\nconcurrency: 2\nengine_args: {a: 1}\n")
    parser = argparse.ArgumentParser()
    add_backend_arguments(parser, prefix="judge")
    add_backend_arguments(parser, prefix="teacher")
    args = parser.parse_args(["--judge-config", str(yaml_path), "--judge-concurrency", "9", "--judge-rpm", "30",
                              "--judge-engine-arg", "b=[1, 2]", "--teacher-backend", "openai",
                              "--teacher-model", "gpt-4o", "--teacher-base-url", "http://127.0.0.1:1/v1"])
    judge = backend_config_from_args(args, prefix="judge")
    assert (judge.backend, judge.model, judge.concurrency, judge.rpm) == ("gemini", "from-yaml", 9, 30.0)
    assert judge.engine_args == {"a": 1, "b": [1, 2]}
    teacher = backend_config_from_args(args, prefix="teacher", concurrency=3)
    assert (teacher.model, teacher.base_url, teacher.concurrency) == ("gpt-4o", "http://127.0.0.1:1/v1", 3)
    with pytest.raises(ValueError, match="needs a model"):
        backend_config_from_args(parser.parse_args([]), prefix="teacher")


def test_chat_request_validation():
    with pytest.raises(ValueError, match="unknown field"):
        ChatRequest.from_dict({"id": "x", "messages": [{"role": "user", "content": "a"}], "temprature": 1})
    with pytest.raises(ValueError, match="n must be"):
        ChatRequest(id="x", messages=[{"role": "user", "content": "a"}], n=0)
    assert ChatRequest(id=7, messages=[{"role": "user", "content": "a"}]).id == "7"


def test_placeholder_base_url_is_kept_for_a_pipeline_but_never_called(tmp_path):
    from mede2_plugin.client.backends.openai_backend import OpenAIBackend

    config = BackendConfig(backend="openai", model="m", base_url="simulated")  # filled in by `mede2 run`
    with pytest.raises(ValueError, match="'simulated' of backend 'openai' is a placeholder"):
        OpenAIBackend(config)


def test_batch_prices_are_half_for_the_providers_with_a_batch_api():
    assert price_for("gpt-4o", mode="batch") == {"input": 1.25, "output": 5.0}
    assert price_for("models/gemini-2.5-pro-preview", mode="batch") == {"input": 0.625, "output": 5.0}
    for model in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "o3", "gemini-2.5-pro", "gemini-2.5-flash"):
        interactive, batch = price_for(model), price_for(model, mode="batch")
        assert batch == {k: v / 2 for k, v in interactive.items()}
    assert price_for("deepseek-reasoner", mode="batch") is None  # no batch API: unknown, not guessed
    assert price_for("gpt-4o", {"gpt-4o": {"input": 1, "output": 1}}, mode="batch") is None
    assert price_for("x", {"x": {"input": 2, "output": 4, "batch": {"input": 1, "output": 2}}}, mode="batch") == \
        {"input": 1.0, "output": 2.0}


def test_prices_and_budget():
    assert price_for("gemini-2.5-pro-preview-06-05") == {"input": 1.25, "output": 10.0}
    assert price_for("models/gemini-2.5-flash") == {"input": 0.30, "output": 2.50}
    assert price_for("my-local-model") is None
    assert price_for("gpt-4o", {"gpt-4o": {"input": 1, "output": 1}}) == {"input": 1.0, "output": 1.0}
    assert call_cost(1000, 2000, {"input": 1.0, "output": 2.0}) == pytest.approx(0.005)
    assert call_cost(1000, 2000, None) is None
    with pytest.raises(ValueError, match="usd_per_mtok"):
        price_for("x", {"x": {"in": 1}})
    budget = Budget(cap_usd=1.0)
    budget.add(0.4)
    budget.in_flight = 1
    assert budget.may_start()  # 0.4 + 1 * 0.4 < 1.0
    budget.in_flight = 2
    assert not budget.may_start() and budget.exhausted


def test_a_name_that_merely_starts_like_a_priced_model_is_not_priced_as_it():
    # o3-mini is not a snapshot of o3 (it costs about half): before, the prefix lookup priced it as o3.
    assert price_for("o3-mini") == {"input": 1.10, "output": 4.40}
    assert price_for("gpt-4o-2024-08-06") == price_for("gpt-4o")  # dated snapshots share the price
    assert price_for("gemini-2.5-pro-exp-03-25") == price_for("gemini-2.5-pro")
    assert price_for("gemini-2.5-flash-lite-preview-06-17") == {"input": 0.10, "output": 0.40}
    for other_model in ("gpt-4.1-nano", "gpt-4o-audio-preview", "o3-pro", "gemini-2.5-pro-vision"):
        assert price_for(other_model) is None, other_model  # unknown, shown as such: not guessed
    assert price_for("o3-pro", {"o3": {"input": 1, "output": 1}}, use_defaults=False) is None


def test_rpm_limit_spaces_request_starts():
    async def run():
        limiter = RateLimiter(rpm=1200)  # one start every 50 ms
        starts = []
        for _ in range(9):
            await limiter.acquire()
            starts.append(time.monotonic())
        return starts

    starts = asyncio.run(run())
    assert starts[-1] - starts[0] >= 8 * 0.05 * 0.98


def test_tpm_limit_waits_for_tokens_and_settles():
    async def run():
        limiter = RateLimiter(tpm=6000)  # 100 tokens per second, one minute's worth up front
        began = time.monotonic()
        await limiter.acquire(6000)
        first = time.monotonic() - began
        await limiter.acquire(40)
        second = time.monotonic() - began
        limiter.settle(estimated=40, actual=0)  # refunded: the next 40 need no wait
        await limiter.acquire(40)
        third = time.monotonic() - began
        return first, second, third

    first, second, third = asyncio.run(run())
    assert first < 0.05 and second >= 0.38 and third - second < 0.05


def test_token_estimate_counts_text_images_and_outputs():
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x.png"}},
                                             {"type": "text", "text": "a" * 400}]}]
    assert estimate_tokens(messages, max_tokens=100, n=2, image_tokens=10) == 100 + 10 + 200


def test_image_conversions(tmp_path):
    image = make_png(tmp_path / "a.png")
    data_url = to_data_url(str(image))
    assert data_url.startswith("data:image/png;base64,")
    assert base64.b64decode(data_url.split(",", 1)[1]) == image.read_bytes()
    assert content_hash(str(image)) == content_hash(data_url) == content_hash(image.as_uri())
    assert content_hash("https://example.org/a.png").startswith("url:")
    assert to_pil(data_url).size == (16, 16)
    messages = [{"role": "system", "content": "s"},
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": str(image)}},
                                             {"type": "text", "text": "what is this?"}]}]
    flat, images = split_messages(messages)
    assert flat[1] == {"role": "user", "content": "<image>what is this?"} and images == [str(image)]
    converted = map_image_urls(messages, lambda url: "X")
    assert converted[1]["content"][0] == {"type": "image_url", "image_url": {"url": "X"}}
    assert messages[1]["content"][0]["image_url"]["url"] == str(image)  # the input is not changed
    with pytest.raises(FileNotFoundError, match="image not found"):
        to_data_url(str(tmp_path / "missing.png"))


def test_backend_registry_is_lazy_and_complete():
    assert set(BACKENDS) == {"openai", "gemini", "vllm", "local"}
    assert backend_class("openai").__name__ == "OpenAIBackend"
    assert issubclass(backend_class("gemini"), BaseBackend)
    with pytest.raises(ValueError, match="unknown backend"):
        backend_class("nope")


def test_base_backend_bridges_batch_and_single_calls(tmp_path):
    from mede2_plugin.client import Completion, Sample, run_batch

    class Upper(BaseBackend):
        name = "upper"
        batched = True
        priced = False

        def generate_batch(self, requests):
            return [ValueError("no text") if r.messages[-1]["content"] == "" else
                    Completion([Sample(r.messages[-1]["content"].upper())], 1, 1) for r in requests]

    config = BackendConfig(backend="local", model="m", progress=False, cache_dir="off", batch_size=2)
    backend = Upper(config)
    requests = [ChatRequest(id=str(i), messages=[{"role": "user", "content": text}])
                for i, text in enumerate(["a", "", "c"])]
    summary = run_batch(requests, tmp_path / "out.jsonl", config, backend=backend)
    assert (summary.succeeded, summary.failed, summary.calls, summary.cost_usd) == (2, 1, 3, 0.0)
    result = asyncio.run(backend.agenerate(requests[2]))
    assert result.samples[0].text == "C"
