"""``run_batch`` hands back the rows it produced, and error rows go through the core redactor."""

from __future__ import annotations

from client_helpers import final_rows

from mede2_plugin.client import (
    BackendConfig,
    ChatRequest,
    Completion,
    Sample,
    run_batch,
)
from mede2_plugin.client.backends.base import BaseBackend
from mede2_plugin.core.redact import REDACTED, Redactor

LEAKY_URL = "https://alice:hunter2pass@proxy.example/v1?key=abcdef123456"
KEY_SHAPED = "sk-" + "A1b2C3d4" * 3


class Echo(BaseBackend):
    """Answers 'ok' except for requests whose text is 'fail', which raise an error naming secrets."""

    name = "echo"
    batched = True
    priced = False

    def generate_batch(self, requests):
        return [RuntimeError(f"upstream {LEAKY_URL} rejected {KEY_SHAPED}") if r.messages[-1]["content"] == "fail"
                else Completion([Sample("ok")], 1, 1) for r in requests]


def _requests(*texts: str) -> list[ChatRequest]:
    return [ChatRequest(id=f"r{i}", messages=[{"role": "user", "content": t}]) for i, t in enumerate(texts)]


def _config() -> BackendConfig:
    return BackendConfig(backend="local", model="m", progress=False, cache_dir="off")


def test_summary_rows_are_the_rows_written_and_stay_out_of_to_dict(tmp_path):
    output = tmp_path / "out.jsonl"
    first = run_batch(_requests("a", "b"), output, _config(), backend=Echo(_config()))
    assert first.rows == final_rows(output)
    assert "rows" not in first.to_dict() and "rows=" not in repr(first)
    again = run_batch(_requests("a", "b", "c"), output, _config(), backend=Echo(_config()))
    assert again.skipped == 2 and set(again.rows) == {"r0", "r1", "r2"}
    assert again.rows == final_rows(output)


def test_error_rows_are_redacted_by_the_thorough_redactor(tmp_path, monkeypatch):
    monkeypatch.setenv("SHORT_PROVIDER_SECRET_VAR", "zq9x")
    config = _config().replace(api_key_env="SHORT_PROVIDER_SECRET_VAR")
    output = tmp_path / "out.jsonl"
    summary = run_batch(_requests("ok", "fail"), output, config, backend=Echo(config))
    error = summary.rows["r1"]["error"]
    assert "hunter2pass" not in error and "abcdef123456" not in error and KEY_SHAPED not in error, error
    assert f"https://{REDACTED}@proxy.example" in error
    text = output.read_text(encoding="utf-8")
    assert "hunter2pass" not in text and KEY_SHAPED not in text


def test_named_key_variable_is_redacted_even_when_short():
    redact = Redactor(["MY_KEY_VAR"], environ={"MY_KEY_VAR": "zq9x", "FEATURE_AUTH": "on"})
    assert redact.text("failed with zq9x") == f"failed with {REDACTED}"
    assert redact.text("auth is on") == "auth is on"  # a short secret-looking flag is not a secret
