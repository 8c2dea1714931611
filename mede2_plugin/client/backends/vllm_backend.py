"""vLLM's in-process engine (``backend: vllm``): batched chat with ``n`` samples per prompt.

``config.model`` is the model folder; ``config.engine_args`` holds ``vllm.LLM`` arguments
(``tensor_parallel_size``, ``gpu_memory_utilization``, ``enforce_eager``, ``max_model_len``,
``dtype``, ...) plus these of ours:

* ``template``: a MedE2 template name (``mede2_qwen2_vl``, ``mede2_intern_vl``) whose jinja chat
  template formats the prompts; without it (and without ``chat_template``) the model folder's own
  ``chat_template.jinja`` does (``mede2 chat-template`` writes ours there).
* ``chat_template``: jinja text or a path to a ``.jinja`` file.
* ``image_max_pixels`` / ``image_min_pixels``: the training YAML's values (LLaMA-Factory's
  defaults 768*768 and 32*32 otherwise); every image is resized as LLaMA-Factory resized it in
  training before vLLM's processor sees it (``image_preprocess: false`` turns that off).
* ``crop_to_patches``: the training YAML's value (default false, as in LLaMA-Factory). InternVL's
  processor tiles images by default while LLaMA-Factory does not, so vLLM is told this value.
* ``mm_processor_kwargs``: any other processor arguments for every call.
* ``vllm_python``: the Python of a vLLM environment to run the engine in.
* ``in_process``: ``true`` / ``false`` to force where the engine runs (default: here when
  ``import vllm`` works, else in the vLLM environment).

Where it runs: vLLM and LLaMA-Factory live in separate environments (their transformers pins
conflict). When this process can import vLLM, the engine runs here. Otherwise the backend starts
``VLLM_PYTHON -m mede2_plugin.engines.vllm_worker --serve`` once, with ``VLLM_PYTHON`` from
``vllm_python``, ``$MEDE2_VLLM_PYTHON`` or the environment ``mede2 vllm-env`` built, and sends it
each chunk of ``config.batch_size`` requests as one JSON line; the worker answers with one line of
results. Either way each chunk is one ``LLM.chat`` call with one ``SamplingParams(n=...)`` per
request, so vLLM batches the whole chunk.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mede2_plugin.client.backends.base import (
    BackendError,
    BaseBackend,
    Completion,
    Sample,
)
from mede2_plugin.client.config import BackendConfig, ChatRequest
from mede2_plugin.engines.vllm_engine import VLLMEngineConfig, resolve_chat_template

OUR_KEYS = ("template", "chat_template", "mm_processor_kwargs", "image_preprocess", "image_max_pixels",
            "image_min_pixels", "crop_to_patches", "model_family", "vllm_python", "in_process")
ENGINE_KEYS = ("mm_processor_kwargs", "image_preprocess", "image_max_pixels", "image_min_pixels", "crop_to_patches",
               "model_family")


def engine_config(config: BackendConfig) -> tuple[VLLMEngineConfig, dict[str, Any]]:
    """The engine settings from a backend config, and our own keys taken out of ``engine_args``."""
    args = dict(config.engine_args)
    ours = {key: args.pop(key) for key in OUR_KEYS if key in args}
    return VLLMEngineConfig(
        model=config.model, llm_args=args,
        chat_template=resolve_chat_template(ours.get("template"), ours.get("chat_template")),
        **{key: ours[key] for key in ENGINE_KEYS if key in ours},
    ), ours


def _completion(result: dict[str, Any]) -> Completion | BaseException:
    if result.get("error"):
        return BackendError(result["error"])
    return Completion(samples=[Sample(text=s["text"], reasoning=s.get("reasoning"),
                                      finish_reason=s.get("finish_reason")) for s in result["samples"]],
                      prompt_tokens=int(result.get("prompt_tokens") or 0),
                      completion_tokens=int(result.get("completion_tokens") or 0))


def _request_dict(request: ChatRequest) -> dict[str, Any]:
    return {"id": request.id, "messages": request.messages, "n": request.n, "temperature": request.temperature,
            "top_p": request.top_p, "max_tokens": request.max_tokens, "seed": request.seed, "stop": request.stop,
            "response_schema": request.response_schema, "extra": request.extra}


class WorkerClient:
    """A :mod:`~mede2_plugin.engines.vllm_worker` subprocess in the vLLM environment."""

    def __init__(self, python: str | Path, config: VLLMEngineConfig) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="mede2-vllm-")
        config_path = Path(self._dir.name) / "engine.json"
        config_path.write_text(json.dumps(asdict(config)), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        self.process = subprocess.Popen(
            [str(python), "-m", "mede2_plugin.engines.vllm_worker", "--serve", "--config", str(config_path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, encoding="utf-8", env=env,
        )
        hello = self._read()
        if "fatal" in hello:
            self.close()
            raise BackendError(f"the vLLM worker ({python}) could not load {config.model}: {hello['fatal']}")

    def _read(self) -> Any:
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line:
            code = self.process.wait()
            raise BackendError(f"the vLLM worker exited (status {code}); its messages are on stderr above")
        return json.loads(line)

    def generate(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(requests) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            raise BackendError("the vLLM worker is gone; its messages are on stderr above") from None
        reply = self._read()
        if isinstance(reply, dict):
            raise BackendError(reply.get("chunk_error") or f"unexpected reply from the vLLM worker: {reply}")
        return reply

    def close(self, timeout_s: float = 60.0) -> None:
        if self.process.poll() is None:
            try:
                if self.process.stdin:
                    self.process.stdin.close()
                self.process.wait(timeout=timeout_s)
            except (subprocess.TimeoutExpired, BrokenPipeError):
                self.process.terminate()
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
        self._dir.cleanup()


class VLLMBackend(BaseBackend):
    name = "vllm"
    batched = True
    priced = False

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self.engine_config, ours = engine_config(config)
        in_process = ours.get("in_process")
        if in_process is None:
            in_process = importlib.util.find_spec("vllm") is not None
        if in_process:
            from mede2_plugin.engines.vllm_engine import VLLMEngine

            self.engine: Any = VLLMEngine(self.engine_config)
            self.where = "in-process"
        else:
            python = ours.get("vllm_python") or _find_python()
            self.engine = WorkerClient(python, self.engine_config)
            self.where = str(python)

    def generate_batch(self, requests: Sequence[ChatRequest]) -> list[Completion | BaseException]:
        results = self.engine.generate([_request_dict(r) for r in requests])
        if len(results) != len(requests):
            raise BackendError(f"vLLM answered {len(results)} of {len(requests)} requests")
        return [_completion(r) for r in results]

    def close(self) -> None:
        if getattr(self, "engine", None) is not None:
            self.engine.close()
            self.engine = None


def _find_python() -> Path:
    from mede2_plugin.engines.vllm_env import find_vllm_python

    python = find_vllm_python()
    if python is None:
        raise BackendError("vllm is not importable here and no vLLM environment was found: build one with "
                           "`mede2 vllm-env` (or set MEDE2_VLLM_PYTHON, or engine_args.vllm_python)")
    return python
