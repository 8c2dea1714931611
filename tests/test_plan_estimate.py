"""The plan's figures: image tokens as each provider bills them, the text estimate, the fake
servers' realistic usage, and what a role's planned calls cost (done, cached, to pay)."""

from __future__ import annotations

import base64
import io
import json
import math

import pytest

from mede2_plugin.client import (
    BackendConfig,
    ChatRequest,
    ResponseCache,
    cache_key,
    run_batch,
)
from mede2_plugin.client.backends.base import Completion, Sample
from mede2_plugin.client.cost import call_cost, price_for
from mede2_plugin.client.estimate import (
    CHARS_PER_TOKEN,
    estimate_calls,
    image_tokens,
    input_tokens,
    text_tokens,
)
from mede2_plugin.core.settings import ConfigError
from mede2_plugin.core.stage import PlannedCalls
from mede2_plugin.pipeline.config import load_pipeline_config
from mede2_plugin.pipeline.plan import format_plan, totals, warnings
from mede2_plugin.testing import FakeGeminiServer, FakeOpenAIServer
from mede2_plugin.testing.server import bpe_tokens, count_tokens

# (provider, model, width, height, detail) -> tokens; OpenAI's own examples (images-vision guide,
# "Calculating costs"), Gemini's rule (tokens guide: 258 up to 384 px, else 258 per 768x768 tile)
IMAGE_CASES = [
    ("openai", "gpt-4o", 1024, 1024, "high", 765),      # scaled to 768x768: 4 tiles
    ("openai", "gpt-4o", 2048, 4096, "high", 1105),     # 1024x2048, then 768x1536: 6 tiles
    ("openai", "gpt-4o", 4096, 8192, "low", 85),        # low detail: the base only
    ("openai", "gpt-4o-2024-08-06", 500, 500, "auto", 255),  # one tile, never scaled up
    ("openai", "gpt-4o-mini", 1024, 1024, "auto", 2833 + 4 * 5667),
    ("gemini", "gemini-2.5-pro", 384, 384, "auto", 258),
    ("gemini", "gemini-2.5-pro", 1024, 768, "auto", 2 * 258),
    ("gemini", "models/gemini-2.5-flash", 1536, 1537, "auto", 6 * 258),
    ("local", "saves/m1", 1024, 1024, "auto", 0),
    ("vllm", "saves/m1", 1024, 1024, "auto", 0),
]


@pytest.mark.parametrize("provider, model, width, height, detail, tokens", IMAGE_CASES)
def test_image_tokens_as_each_provider_bills_them(provider, model, width, height, detail, tokens):
    assert image_tokens(provider, model, (width, height), detail) == tokens


def png_url(width: int, height: int) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 40)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


SENTENCE = "A 63-year-old man presents with hemoptysis and pleuritic chest pain; his troponin is 0.04 ng/mL."


def test_text_estimates():
    assert text_tokens(SENTENCE) == math.ceil(len(SENTENCE) / CHARS_PER_TOKEN)
    # 32 is what the o200k_base tokenizer (GPT-4o) gives this sentence (bpe-openai, measured once);
    # whitespace words miss the numbers and units, the BPE-like count and chars / 3.8 do not
    assert count_tokens(SENTENCE) == 15
    assert abs(bpe_tokens(SENTENCE) - 32) <= 4
    assert abs(text_tokens(SENTENCE) - 32) <= 8


@pytest.mark.parametrize("server_class, backend, model, image", [
    (FakeOpenAIServer, "openai", "gpt-4o", 765), (FakeGeminiServer, "gemini", "gemini-2.5-pro", 4 * 258)])
def test_fake_servers_report_realistic_usage_on_request(tmp_path, monkeypatch, server_class, backend, model, image):
    monkeypatch.setenv("MEDE2_TEST_KEY", "k")
    messages = [{"role": "system", "content": "You are a careful physician."},
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": png_url(1024, 1024)}},
                                             {"type": "text", "text": SENTENCE}]}]
    request = ChatRequest(id="q", messages=messages, max_tokens=50)
    with server_class(reply="The answer is \\boxed{A}.", usage="tokens") as server:
        config = BackendConfig(backend=backend, model=model, base_url=server.base_url, cache_dir="off",
                               progress=False, max_retries=0, api_key_env="MEDE2_TEST_KEY")
        row = run_batch([request], tmp_path / "out.jsonl", config).rows["q"]
    text = (3 + bpe_tokens("You are a careful physician.")) + (3 + bpe_tokens(SENTENCE)) + 3
    assert row["usage"]["prompt_tokens"] == text + image  # the text BPE-like, the image as billed
    assert row["usage"]["completion_tokens"] == bpe_tokens("The answer is \\boxed{A}.")
    assert abs(input_tokens(request, config) - row["usage"]["prompt_tokens"]) <= 0.1 * row["usage"]["prompt_tokens"]


def _request(rid: str, text: str, n: int = 1) -> ChatRequest:
    return ChatRequest(id=rid, messages=[{"role": "user", "content": text}], n=n, max_tokens=100)


def test_a_roles_calls_cost_nothing_when_answered_or_cached(tmp_path):
    backend = BackendConfig(backend="openai", model="gpt-4o")
    answered, cached, to_pay, maybe = (_request("a", "first " * 40), _request("b", "second " * 40),
                                       _request("c", "third " * 40, n=2), _request("d", "fourth " * 40))
    output = tmp_path / "role.results.jsonl"  # "a" answered in the results file (two samples, 30 tokens)
    output.write_text(json.dumps({"id": "a", "samples": [{"text": "x"}, {"text": "y"}], "error": None,
                                  "usage": {"prompt_tokens": 50, "completion_tokens": 30}}) + "\n"
                      + json.dumps({"id": "c", "samples": [], "error": "HTTP 500"}) + "\n")
    cache = ResponseCache(tmp_path / "cache")  # "b" in the response cache
    cache.put(cache_key(backend, cached), Completion(samples=[Sample("z")], prompt_tokens=1, completion_tokens=1))
    cache.close()
    planned = PlannedCalls("classifier", backend, output, [answered, cached, to_pay], [maybe], "test")
    row = estimate_calls("curate", planned, tmp_path / "cache")
    assert (row.done, row.cached) == (1, 1)
    assert row.requests == [1, 2] and row.samples == [2, 3]  # "c" failed before: asked again
    assert row.input_tokens == [input_tokens(to_pay, backend), input_tokens(to_pay, backend) + input_tokens(maybe, backend)]
    assert row.output_tokens == [2 * 15, 3 * 15]  # measured: 30 tokens over the 2 samples answered
    assert "measured" in row.output_basis
    price = price_for("gpt-4o")
    assert row.usd_interactive == [round(call_cost(row.input_tokens[i], row.output_tokens[i], price), 6) for i in (0, 1)]
    assert row.usd_batch == [pytest.approx(v / 2) for v in row.usd_interactive]
    again = estimate_calls("curate", planned, tmp_path / "cache", reuse_output=False)  # the step is redone
    assert again.done == 0 and again.requests == [2, 3]


def test_max_tokens_bound_unknown_prices_and_totals(tmp_path):
    mystery = BackendConfig(backend="openai", model="mystery-model", mode="interactive")
    local = BackendConfig(backend="local", model="saves/m1")
    rows = [estimate_calls("distill", PlannedCalls("teacher[x]", mystery, tmp_path / "none.jsonl",
                                                   [_request("q", "hello", n=3)]), None),
            estimate_calls("rollout", PlannedCalls("rollout (M1)", local, None, [_request("q", "hi", n=8)]), None)]
    assert rows[0].output_tokens == [300, 300] and "max_tokens" in rows[0].output_basis
    assert rows[0].usd_interactive is None and rows[1].priced is False
    (line,) = warnings(rows)
    assert "mystery-model" in line and "prices:" in line
    summed = totals(rows)
    assert summed["requests"] == [1, 1] and summed["own_gpus"]["samples"] == [8, 8]
    assert summed["usd_interactive"] == [0.0, 0.0]
    plan = {"output_dir": "x", "steps": {}, "rows": [r.to_dict() for r in rows], "totals": summed, "warnings": [line]}
    text = format_plan(plan)
    assert "(own GPUs)" in text and "warning: model 'mystery-model'" in text and "unknown" in text


def test_pipeline_prices_section(tmp_path):
    demo = __import__("mede2_plugin.core.resources", fromlist=["x"]).examples_dir() / "demo" / "pipeline.yaml"
    config = load_pipeline_config(demo, ["prices={simulated-judge: {input: 1.0, output: 2.0}}"])
    assert config.prices == {"simulated-judge": {"input": 1.0, "output": 2.0}}
    with pytest.raises((ConfigError, ValueError), match="simulated-judge"):
        load_pipeline_config(demo, ["prices={simulated-judge: {input: 1.0}}"])
