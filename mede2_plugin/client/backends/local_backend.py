"""A local model on CPU (or one GPU) through LLaMA-Factory's ``ChatModel`` with the HuggingFace engine.

Used by the tests and the offline demo with the tiny model; fine for small evaluations. The
model folder is ``config.model``; ``config.engine_args`` are LLaMA-Factory inference arguments
(``template`` defaults to ``mede2_qwen2_vl``; e.g. ``adapter_name_or_path``, ``infer_dtype``).
Images become PIL images and ``<image>`` placeholders where they stood in the message. ``n``
samples come from the engine's ``num_return_sequences`` (sampling). A request's ``seed`` seeds
torch just before its own generation, so a seeded request samples the same text whatever ran
before it (a resumed run equals a clean one). LLaMA-Factory is imported only when this backend
is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mede2_plugin.client.backends.base import (
    BackendError,
    BaseBackend,
    Completion,
    Sample,
)
from mede2_plugin.client.config import BackendConfig, ChatRequest
from mede2_plugin.core.media import split_messages, to_pil

DEFAULT_TEMPLATE = "mede2_qwen2_vl"


class LocalBackend(BaseBackend):
    name = "local"
    batched = True
    priced = False

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        try:
            from llamafactory.chat import ChatModel
        except ImportError as err:  # pragma: no cover - depends on the installation
            raise ImportError("the local backend needs LLaMA-Factory: "
                              "pip install 'mede2-plugin[llamafactory]'") from err
        args: dict[str, Any] = {"template": DEFAULT_TEMPLATE, "infer_backend": "huggingface",
                                **config.engine_args, "model_name_or_path": config.model}
        self.chat_model = ChatModel(args)

    def _one(self, request: ChatRequest) -> Completion:
        messages, image_urls = split_messages(request.messages)
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system") or None
        turns = [m for m in messages if m["role"] != "system"]
        if not turns or turns[-1]["role"] != "user":
            raise BackendError("the local backend needs a conversation ending with a user turn")
        kwargs: dict[str, Any] = {"num_return_sequences": request.n}
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
            kwargs["do_sample"] = request.temperature > 0
        if request.top_p is not None:
            kwargs["top_p"] = request.top_p
        if request.max_tokens is not None:
            kwargs["max_new_tokens"] = request.max_tokens
        kwargs.update(request.extra)
        images = [to_pil(url) for url in image_urls] or None
        if request.seed is not None:
            import torch

            torch.manual_seed(request.seed)
        responses = self.chat_model.chat(turns, system=system, images=images, **kwargs)
        completion = Completion(prompt_tokens=responses[0].prompt_length if responses else 0)
        for response in responses:
            completion.samples.append(Sample(text=response.response_text, finish_reason=response.finish_reason))
            completion.completion_tokens += response.response_length
        return completion

    def generate_batch(self, requests: Sequence[ChatRequest]) -> list[Completion | BaseException]:
        results: list[Completion | BaseException] = []
        for request in requests:  # the HuggingFace engine answers one prompt at a time
            try:
                results.append(self._one(request))
            except Exception as err:  # noqa: BLE001 - one bad request fails only itself
                results.append(err)
        return results

    def close(self) -> None:
        self.chat_model = None  # type: ignore[assignment]
