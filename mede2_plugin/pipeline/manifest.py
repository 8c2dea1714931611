"""The run manifest: ``<output_dir>/manifest.json``, rewritten (atomically) as the run goes.

It says what produced every output: for each stage its inputs and outputs with content hashes,
the prompt template hashes, the models and sampling settings of the roles it called, counts,
tokens, cost and wall time; plus the resolved settings, package versions and every invocation
of ``mede2 run`` on this folder. Secrets never reach it: :class:`Redactor` replaces the values of
secret-looking environment variables, secret-looking keys (``api_key``, ``token``, ``password``,
``authorization``, ...), credentials inside URLs and strings shaped like provider keys with
``***`` before anything is written. ``api_key_env`` keeps the variable's *name*, never its value.
"""

from __future__ import annotations

import os
import platform
import re
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from mede2_plugin.pipeline.state import write_json_atomic

FORMAT = "mede2-run-manifest/1"
REDACTED = "***"
PACKAGES = ("mede2-plugin", "llamafactory", "transformers", "torch", "peft", "trl", "accelerate", "datasets",
            "deepspeed", "vllm", "openai", "google-genai", "jinja2", "pillow")
RECORDED_ENV = ("FORCE_TORCHRUN", "NPROC_PER_NODE", "NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT",
                "CUDA_VISIBLE_DEVICES", "DS_ACCELERATOR", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
SECRET_ENV_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH)", re.IGNORECASE)
SECRET_FIELD = re.compile(
    r"^(?:.*[_-])?(?:api[_-]?key|apikey|key|token|access[_-]?token|secret|client[_-]?secret|password|passwd|"
    r"credentials?|authorization|auth|bearer|cookie)$", re.IGNORECASE)
ENV_VAR_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
KEY_SHAPES = re.compile(
    r"(sk-[A-Za-z0-9_\-]{12,}|AIza[0-9A-Za-z_\-]{20,}|hf_[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{20,}|"
    r"xox[abpr]-[A-Za-z0-9\-]{10,}|(?i:bearer)\s+[A-Za-z0-9._\-]{12,})")
URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.\-]*://)[^/\s:@]+(?::[^/\s@]*)?@", re.IGNORECASE)
URL_SECRET_PARAM = re.compile(r"(?P<name>[?&](?:api[_-]?key|key|token|access_token|sig|signature|secret)=)[^&#\s]+",
                              re.IGNORECASE)
MIN_SECRET_LENGTH = 6


class Redactor:
    """Replaces anything that looks like a secret with ``***`` in nested JSON-able data.

    Args:
        extra_env_names: names of further environment variables whose values are secrets (e.g.
            every ``api_key_env`` of the configured backends).
        environ: the environment to read the secret values from (default: ``os.environ``).
    """

    def __init__(self, extra_env_names: list[str] | tuple[str, ...] = (),
                 environ: dict[str, str] | None = None) -> None:
        environ = dict(os.environ if environ is None else environ)
        names = {n for n in environ if SECRET_ENV_NAME.search(n)} | {n for n in extra_env_names if n}
        values = {environ[n] for n in names if n in environ}
        self.secrets = sorted((v for v in values if len(v) >= MIN_SECRET_LENGTH), key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        value = KEY_SHAPES.sub(REDACTED, value)
        value = URL_USERINFO.sub(lambda m: m.group("scheme") + REDACTED + "@", value)
        return URL_SECRET_PARAM.sub(lambda m: m.group("name") + REDACTED, value)

    def __call__(self, data: Any, key: str | None = None) -> Any:
        if isinstance(data, dict):
            return {str(k): self(v, str(k)) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return [self(v) for v in data]
        if isinstance(data, str):
            if key is not None and SECRET_FIELD.match(key) and data:
                return REDACTED
            if key == "api_key_env" and not ENV_VAR_NAME.match(data):
                return REDACTED
            return self.text(data)
        return data


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed versions (None when not installed), from ``importlib.metadata``."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment_record() -> dict[str, Any]:
    """Python, platform, package versions, the launcher's environment variables, GPUs if known."""
    record: dict[str, Any] = {
        "python": sys.version.split()[0], "platform": platform.platform(),
        "packages": package_versions(),
        "env": {name: os.environ[name] for name in RECORDED_ENV if name in os.environ},
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            record["cuda_devices"] = torch.cuda.device_count()
        except Exception:  # noqa: BLE001, S110 - informative only
            pass
    return record


def usage_of(calls: list[dict[str, Any]]) -> dict[str, Any]:
    """Calls, cache hits, tokens and cost summed over ``BatchSummary`` dicts (cost None if unknown)."""
    total: dict[str, Any] = {"requests": 0, "calls": 0, "cache_hits": 0, "skipped": 0, "failed": 0,
                             "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
    for call in calls:
        total["requests"] += int(call.get("total") or 0)
        for key in ("calls", "cache_hits", "skipped", "failed", "prompt_tokens", "completion_tokens"):
            total[key] += int(call.get(key) or 0)
        if call.get("calls") and call.get("cost_usd") is None:
            total["cost_usd"] = None
        elif total["cost_usd"] is not None:
            total["cost_usd"] += float(call.get("cost_usd") or 0.0)
    if total["cost_usd"] is not None:
        total["cost_usd"] = round(total["cost_usd"], 10)
    return total


class Manifest:
    """``manifest.json`` of one output folder; every change is written at once.

    Args:
        path: the manifest file (an existing one is continued: earlier runs and stages are kept).
        redactor: applied to everything before it is written.
    """

    def __init__(self, path: str | Path, redactor: Redactor | None = None) -> None:
        import json

        self.path = Path(path)
        self.redactor = redactor or Redactor()
        self.data: dict[str, Any] = {"format": FORMAT, "runs": [], "stages": {}}
        if self.path.exists():
            try:
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
                if isinstance(loaded, dict) and loaded.get("format") == FORMAT:
                    self.data = loaded
            except json.JSONDecodeError:
                pass
        self.data.setdefault("runs", [])
        self.data.setdefault("stages", {})

    # -- run level --------------------------------------------------------------------------
    def begin_run(self, argv: list[str], config_file: str | None, config_plain: dict[str, Any],
                  config_sha256: str, selection: dict[str, Any]) -> None:
        self.data.update(output_dir=str(self.path.parent.resolve()), config_file=config_file,
                         config_sha256=config_sha256, config=config_plain, environment=environment_record())
        self.data["runs"].append({"started": _now(), "ended": None, "argv": list(argv), **selection,
                                  "status": "running", "stages": {}})
        self.write()

    def end_run(self, status: str) -> None:
        run = self.data["runs"][-1]
        run.update(ended=_now(), status=status)
        self.data["totals"] = self.totals()
        self.write()

    # -- stage level ------------------------------------------------------------------------
    def stage_skipped(self, name: str, reason: str) -> None:
        record = self.data["stages"].setdefault(name, {"status": "unknown"})
        record["last_checked"] = _now()
        self.data["runs"][-1]["stages"][name] = f"skipped: {reason}"
        self.write()

    def stage_started(self, name: str, decision: str, fingerprint: str, inputs: dict[str, Any],
                      models: list[dict[str, Any]]) -> None:
        self.data["stages"][name] = {"status": "running", "decision": decision, "started": _now(),
                                     "ended": None, "wall_s": None, "fingerprint": fingerprint,
                                     "inputs": inputs, "models": models, "outputs": {}, "counts": {},
                                     "calls": [], "usage": usage_of([])}
        self.data["runs"][-1]["stages"][name] = "running"
        self.write()

    def stage_finished(self, name: str, status: str, wall_s: float, outputs: dict[str, str | None],
                       counts: dict[str, Any], calls: list[dict[str, Any]], message: str = "",
                       extra: dict[str, Any] | None = None) -> None:
        record = self.data["stages"].setdefault(name, {})
        record.update(status=status, ended=_now(), wall_s=round(wall_s, 3), outputs=outputs, counts=counts,
                      calls=[_trim_call(c) for c in calls], usage=usage_of(calls), message=message,
                      **(extra or {}))
        self.data["runs"][-1]["stages"][name] = status
        self.data["totals"] = self.totals()
        self.write()

    def totals(self) -> dict[str, Any]:
        calls = [c for record in self.data["stages"].values() for c in record.get("calls") or []]
        return usage_of(calls)

    def write(self) -> None:
        write_json_atomic(self.path, self.redactor(self.data))


def _trim_call(call: dict[str, Any]) -> dict[str, Any]:
    keep = ("stage", "output", "backend", "model", "total", "succeeded", "failed", "skipped", "not_attempted",
            "calls", "cache_hits", "prompt_tokens", "completion_tokens", "cost_usd", "budget_exhausted", "elapsed_s")
    return {k: call.get(k) for k in keep if k in call}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
