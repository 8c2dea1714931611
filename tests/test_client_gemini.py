"""google-genai against the fake Gemini server: wire format, JSON schema, thinking, images, faults."""

from __future__ import annotations

import argparse
import base64
import json

import pytest
from client_helpers import final_rows, make_png, text_requests

from mede2_plugin.client import BackendConfig, ChatRequest, run_batch
from mede2_plugin.testing import FakeGeminiServer, Fault
from mede2_plugin.testing.fake_gemini import inline_images, prompt_text

SCHEMA = {"type": "object", "properties": {"score": {"type": "integer"}, "why": {"type": "string"}},
          "required": ["score", "why"]}


def gemini_config(server, tmp_path, **changes) -> BackendConfig:
    values = dict(backend="gemini", model="gemini-2.5-pro", base_url=server.base_url, concurrency=4,
                  max_retries=3, timeout_s=5, progress=False, cache_dir=str(tmp_path / "cache"))
    values.update(changes)
    return BackendConfig(**values)


def judge_reply(body):
    text = prompt_text(body)
    return json.dumps({"score": len(text.split()), "why": "counted"}), "weighing the criteria"


def test_json_schema_output_is_parsed_with_thoughts_and_inline_images(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "fake-gemini-key-123456")
    image = make_png(tmp_path / "scan.png")
    request = ChatRequest(id="judge-1", response_schema=SCHEMA, temperature=0.0, max_tokens=256, messages=[
        {"role": "system", "content": "You are a strict judge."},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": str(image)}},
                                     {"type": "text", "text": "rate this reasoning"}]}])
    with FakeGeminiServer(reply=judge_reply) as server:
        summary = run_batch([request], tmp_path / "out.jsonl", gemini_config(server, tmp_path, thinking_budget=512))
    assert summary.succeeded == 1
    call = server.calls[0]
    assert call.path == "/v1beta/models/gemini-2.5-pro:generateContent"
    config = call.body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == SCHEMA
    assert config["temperature"] == 0.0 and config["maxOutputTokens"] == 256
    thinking = config["thinkingConfig"]
    assert thinking.get("thinkingBudget", thinking.get("thinking_budget")) == 512
    assert call.body["systemInstruction"]["parts"][0]["text"] == "You are a strict judge."
    (inline,) = inline_images(call.body)
    assert inline["mimeType"] == "image/png"
    assert base64.urlsafe_b64decode(inline["data"]) == image.read_bytes()
    row = final_rows(tmp_path / "out.jsonl")["judge-1"]
    sample = row["samples"][0]
    assert sample["parsed"] == {"score": 8, "why": "counted"}  # 5 system + 3 user words
    assert sample["reasoning"] == "weighing the criteria"
    assert sample["finish_reason"] == "stop"
    output_tokens = len(sample["text"].split()) + 3  # answer words + thought words
    assert row["usage"]["completion_tokens"] == output_tokens
    assert row["cost_usd"] == pytest.approx((row["usage"]["prompt_tokens"] * 1.25 + output_tokens * 10.0) / 1e6)


def _sdk_default_api_version(monkeypatch, version: str) -> None:
    """Make google-genai default to ``version`` when the caller sets none, as a release that changed
    its default does (3.x moved from v1beta to v1), whatever the installed release is."""
    from google.genai import _api_client

    original = _api_client.BaseApiClient.__init__

    def init(self, *args, http_options=None, **kwargs):
        original(self, *args, http_options=http_options, **kwargs)
        asked = (http_options.get("api_version") if isinstance(http_options, dict)
                 else getattr(http_options, "api_version", None))
        if not asked:
            self._http_options.api_version = version

    monkeypatch.setattr(_api_client.BaseApiClient, "__init__", init)


@pytest.mark.parametrize("sdk_default", ["v1", "v1alpha"])
def test_request_path_is_v1beta_whatever_the_sdk_default(tmp_path, monkeypatch, sdk_default):
    from google import genai
    from google.genai import errors, types

    _sdk_default_api_version(monkeypatch, sdk_default)
    with FakeGeminiServer(reply="fine") as server:
        # A client left to the SDK's default now calls another path, which the service (and the
        # fake, serving only the real v1beta path) does not have.
        plain = genai.Client(api_key="fake-key", http_options=types.HttpOptions(base_url=server.base_url))
        with pytest.raises(errors.ClientError, match=f"no route /{sdk_default}/models/gemini-2.5-pro:generateContent"):
            plain.models.generate_content(model="gemini-2.5-pro", contents="hi")
        summary = run_batch(text_requests(1), tmp_path / "out.jsonl", gemini_config(server, tmp_path))
    assert summary.succeeded == 1
    assert [c.path for c in server.calls] == ["/v1beta/models/gemini-2.5-pro:generateContent"]


def test_api_version_is_a_setting(tmp_path):
    from mede2_plugin.client.cli import add_backend_arguments, backend_config_from_args

    parser = argparse.ArgumentParser()
    add_backend_arguments(parser)
    args = parser.parse_args(["--backend", "gemini", "--model", "gemini-2.5-pro", "--gemini-api-version", "v1alpha"])
    assert backend_config_from_args(args).gemini_api_version == "v1alpha"
    with FakeGeminiServer(reply="fine", api_version="v1alpha") as server:
        config = gemini_config(server, tmp_path, gemini_api_version="v1alpha")
        assert run_batch(text_requests(1), tmp_path / "out.jsonl", config).succeeded == 1
    assert server.calls[0].path == "/v1alpha/models/gemini-2.5-pro:generateContent"


def test_candidates_give_n_samples(tmp_path):
    with FakeGeminiServer(reply=lambda body, index: f"candidate {index}") as server:
        run_batch([ChatRequest(id="a", messages=[{"role": "user", "content": "hi"}], n=3)],
                  tmp_path / "out.jsonl", gemini_config(server, tmp_path))
    assert server.calls[0].body["generationConfig"]["candidateCount"] == 3
    assert [s["text"] for s in final_rows(tmp_path / "out.jsonl")["a"]["samples"]] == \
        ["candidate 0", "candidate 1", "candidate 2"]


def test_faults_are_retried_until_answered(tmp_path):
    faults = ["429", "500", "503", "truncated", "malformed", Fault.timeout(3.0)]
    with FakeGeminiServer(reply="fine", faults=[Fault.rate_limit(None) if f == "429" else f for f in faults]) as server:
        config = gemini_config(server, tmp_path, concurrency=1, timeout_s=1.0, max_retries=6,
                               retry_initial_s=0.05, retry_max_s=0.2)
        summary = run_batch(text_requests(2), tmp_path / "out.jsonl", config)
    assert summary.succeeded == 2 and summary.failed == 0
    assert [c.fault for c in server.calls] == ["429", "500", "503", "truncated", "malformed", "timeout", None, None]


@pytest.mark.parametrize("where", ["header", "body"])
def test_retry_after_is_honoured(tmp_path, where):
    class RetryInfoServer(FakeGeminiServer):  # Gemini's own way: RetryInfo in the error body
        def error_body(self, status, message):
            body = super().error_body(status, message)
            body["error"]["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.5s"}]
            return body

    server_class = FakeGeminiServer if where == "header" else RetryInfoServer
    fault = Fault.rate_limit(retry_after=1.5 if where == "header" else None)
    with server_class(reply="fine", faults=[fault]) as server:
        config = gemini_config(server, tmp_path, retry_initial_s=0.05, retry_max_s=0.2)
        assert run_batch(text_requests(1), tmp_path / "out.jsonl", config).succeeded == 1
    first, second = server.calls
    assert first.fault == "429" and second.fault is None
    assert second.started - first.started >= 1.4  # the backoff alone would wait at most 0.2 s


def test_retries_exhausted_gives_error_row(tmp_path):
    with FakeGeminiServer(reply="never", faults=lambda index, body: "500") as server:
        config = gemini_config(server, tmp_path, max_retries=1, retry_initial_s=0.05)
        summary = run_batch(text_requests(2), tmp_path / "out.jsonl", config)
    assert summary.failed == 2 and server.call_count == 4
    rows = final_rows(tmp_path / "out.jsonl")
    assert all(r["samples"] == [] and "500" in r["error"] for r in rows.values())
