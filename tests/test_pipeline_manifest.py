"""The run manifest never holds a secret, and sums calls, tokens and cost correctly."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from mede2_plugin.core.redact import REDACTED, Redactor
from mede2_plugin.pipeline.manifest import Manifest, package_versions, usage_of


@pytest.fixture()
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    value = "sk-mede2test-" + secrets.token_hex(12)
    monkeypatch.setenv("OPENAI_API_KEY", value)
    return value


def test_env_key_value_never_reaches_the_manifest(tmp_path: Path, api_key: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_JUDGE_CREDS", "plain-value-123456")          # named by api_key_env below
    manifest = Manifest(tmp_path / "manifest.json", Redactor(["MY_JUDGE_CREDS"]))
    config = {
        "roles": {"judge": {"backend": "openai", "model": "gpt-4o", "api_key_env": "MY_JUDGE_CREDS",
                            "base_url": f"https://user:{api_key}@proxy.example/v1?key={api_key}"}},
        "training": {"stage1": {"overrides": {"hub_token": api_key, "learning_rate": 1e-4}}},
        "notes": f"the key {api_key} pasted into a note, and plain-value-123456 too",
    }
    manifest.begin_run(["mede2", "run", "x.yaml"], "x.yaml", config, "sha", {"from": None})
    manifest.stage_started("curate", "fresh", "fp", {"settings": config}, [{"role": "judge", "model": "gpt-4o"}])
    manifest.stage_finished("curate", "complete", 1.0, {}, {"error_text": f"401 for key {api_key}"}, [])
    manifest.end_run("complete")
    text = (tmp_path / "manifest.json").read_text()
    assert api_key not in text and "plain-value-123456" not in text
    data = json.loads(text)
    judge = data["config"]["roles"]["judge"]
    assert judge["api_key_env"] == "MY_JUDGE_CREDS"                     # the name is kept
    assert judge["base_url"].startswith("https://***@proxy.example/v1?key=***")
    assert data["config"]["training"]["stage1"]["overrides"] == {"hub_token": REDACTED, "learning_rate": 1e-4}


def test_redactor_keeps_ordinary_fields() -> None:
    redact = Redactor([], environ={})
    data = {"prompt_tokens": 12, "completion_tokens": 3, "max_tokens": 96, "model": "gpt-4o",
            "api_key_env": "OPENAI_API_KEY", "token": "abc", "Authorization": "Bearer abcdefghijklmnop",
            "text": "use sk-abcdefghijklmnopqrstuv here", "hf": "hf_" + "a" * 30, "google": "AIza" + "b" * 30}
    out = redact(data)
    assert out["prompt_tokens"] == 12 and out["max_tokens"] == 96 and out["model"] == "gpt-4o"
    assert out["api_key_env"] == "OPENAI_API_KEY"
    assert out["token"] == REDACTED and out["Authorization"] == REDACTED
    assert out["text"] == f"use {REDACTED} here" and out["hf"] == REDACTED and out["google"] == REDACTED
    assert redact({"api_key_env": "sk-pasted-the-key-itself"})["api_key_env"] == REDACTED


def test_usage_sums_calls_and_marks_unknown_cost() -> None:
    calls = [{"total": 4, "calls": 3, "cache_hits": 1, "skipped": 0, "failed": 0, "prompt_tokens": 10,
              "completion_tokens": 5, "cost_usd": 0.25},
             {"total": 2, "calls": 0, "cache_hits": 0, "skipped": 2, "failed": 0, "prompt_tokens": 0,
              "completion_tokens": 0, "cost_usd": None}]
    usage = usage_of(calls)
    assert usage == {"requests": 6, "calls": 3, "cache_hits": 1, "skipped": 2, "failed": 0, "prompt_tokens": 10,
                     "completion_tokens": 5, "cost_usd": 0.25}
    calls[1]["calls"] = 1                                              # a paid call of unknown price
    assert usage_of(calls)["cost_usd"] is None


def test_manifest_keeps_earlier_runs_and_skips(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    first = Manifest(path)
    first.begin_run(["mede2", "run"], None, {}, "sha", {})
    first.stage_started("pairs", "fresh", "fp", {}, [])
    first.stage_finished("pairs", "complete", 0.5, {"p": "h"}, {"pairs": 3}, [])
    first.end_run("complete")
    second = Manifest(path)
    second.begin_run(["mede2", "run"], None, {}, "sha", {})
    second.stage_skipped("pairs", "outputs complete and inputs unchanged")
    second.end_run("complete")
    data = json.loads(path.read_text())
    assert len(data["runs"]) == 2 and data["runs"][1]["stages"]["pairs"].startswith("skipped")
    assert data["stages"]["pairs"]["counts"] == {"pairs": 3} and "last_checked" in data["stages"]["pairs"]


def test_package_versions_from_metadata() -> None:
    versions = package_versions(("mede2-plugin", "surely-not-installed-pkg"))
    assert versions["mede2-plugin"] and versions["surely-not-installed-pkg"] is None
