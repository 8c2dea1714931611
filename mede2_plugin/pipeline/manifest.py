"""The run manifest: ``<output_dir>/manifest.json``, rewritten (atomically) as the run goes.

It says what produced every output: for each stage its inputs and outputs with content hashes,
the prompt template hashes, the models and sampling settings of the roles it called, counts,
tokens, cost and wall time; plus the resolved settings, package versions and every invocation
of ``mede2 run`` on this folder. Secrets never reach it: everything goes through the package's
one redactor (:class:`mede2_plugin.core.redact.Redactor`) before it is written.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from mede2_plugin.core.files import atomic_write_json
from mede2_plugin.core.redact import Redactor
from mede2_plugin.pipeline.state import plain_json

FORMAT = "mede2-run-manifest/1"
PACKAGES = ("mede2-plugin", "llamafactory", "transformers", "torch", "peft", "trl", "accelerate", "datasets",
            "deepspeed", "vllm", "openai", "google-genai", "jinja2", "pillow")
RECORDED_ENV = ("FORCE_TORCHRUN", "NPROC_PER_NODE", "NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT",
                "CUDA_VISIBLE_DEVICES", "DS_ACCELERATOR", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


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
        atomic_write_json(self.path, plain_json(self.redactor(self.data)))


def _trim_call(call: dict[str, Any]) -> dict[str, Any]:
    keep = ("stage", "output", "backend", "model", "total", "succeeded", "failed", "skipped", "not_attempted",
            "calls", "cache_hits", "prompt_tokens", "completion_tokens", "cost_usd", "budget_exhausted", "elapsed_s")
    return {k: call.get(k) for k in keep if k in call}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
