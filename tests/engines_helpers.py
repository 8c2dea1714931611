"""Shared by tests/test_engines_*.py: the tiny InternVL, test images, and the three ways a prompt
becomes token ids (LLaMA-Factory in training, the HuggingFace processor, vLLM in its environment)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mede2_plugin.core.chat_format import llamafactory_prompt, openai_messages
from mede2_plugin.core.questions import Question
from mede2_plugin.engines.vllm_env import find_vllm_python

NO_VLLM_ENV = ("no vLLM environment: build it with `mede2 vllm-env` (default ./.venv-vllm; or set "
               "MEDE2_VLLM_ENV / MEDE2_VLLM_PYTHON)")


def vllm_python_or_skip() -> Path:
    python = find_vllm_python()
    if python is None:
        pytest.skip(NO_VLLM_ENV)
    return python


@pytest.fixture(scope="session")
def tiny_internvl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight InternVL3-hf with the mede2_intern_vl chat template."""
    from mede2_plugin.tiny_internvl import build_tiny_internvl

    return build_tiny_internvl(tmp_path_factory.mktemp("tiny") / "internvl")


@pytest.fixture(scope="session")
def tiny_gemma3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Gemma 3 with the mede2_gemma3 chat template."""
    from mede2_plugin.tiny_gemma3 import build_tiny_gemma3

    return build_tiny_gemma3(tmp_path_factory.mktemp("tiny") / "gemma3")


def make_images(folder: Path) -> dict[str, str]:
    """PNGs of awkward sizes and modes: small, large (resized by LLaMA-Factory), thin, RGBA."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    specs = {"small": ((64, 48), "RGB"), "large": ((1000, 700), "RGB"), "thin": ((20, 300), "RGB"),
             "rgba": ((90, 61), "RGBA")}
    paths = {}
    for name, (size, mode) in specs.items():
        image = Image.new(mode, size, (30, 60, 90, 255)[: len(mode)])
        draw = ImageDraw.Draw(image)
        draw.rectangle([size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2], fill=(220, 40, 20, 128)[: len(mode)])
        draw.line([0, 0, size[0], size[1]], fill=(250, 250, 0, 200)[: len(mode)], width=3)
        paths[name] = str(folder / f"{name}.png")
        image.save(paths[name])
    return paths


def question(images: list[str]) -> Question:
    return Question(id="q", source="test", question="A 60-year-old man has a cough. What does the image show?",
                    options={"A": "Mass", "B": "Fracture", "C": "Normal"}, answer="A", images=images,
                    patient_info="He smoked for 30 years.")


def served_messages(q: Question, system: str | None = None, embed_images: bool = True) -> list[dict[str, Any]]:
    """The OpenAI-style request of ``q``; ``system`` replaces the system message's text when given."""
    messages = openai_messages(q, embed_images=embed_images)
    return messages if system is None else [{"role": "system", "content": system}, *messages[1:]]


def training_prompt_ids(model_dir: Path, template_name: str, q: Question, model_args: dict[str, Any],
                        system: str | None = None) -> list[int]:
    """The prompt ids LLaMA-Factory trains on: its tokenizer/processor loading, its template, its
    multimodal plugin, exactly as its supervised and pairwise dataset processors call them
    (``system``: the record's system text; None, like "", means the template's default)."""
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments, ModelArguments
    from llamafactory.model import load_tokenizer

    module = load_tokenizer(ModelArguments(model_name_or_path=str(model_dir), **model_args))
    tokenizer, processor = module["tokenizer"], module["processor"]
    template = get_template_and_fix_tokenizer(tokenizer, DataArguments(template=template_name))
    messages = llamafactory_prompt(q) + [{"role": "assistant", "content": ""}]
    messages = template.mm_plugin.process_messages(messages, list(q.images), [], [], processor)
    prefix, _ = template.mm_plugin.process_token_ids([], [], list(q.images), [], [], tokenizer, processor)
    prompt_ids, _ = template.encode_oneturn(tokenizer, messages, system=system)
    return prefix + prompt_ids


def hf_prompt_ids(model_dir: Path, q: Question, model_args: dict[str, Any], family: str,
                  tokenizer_overrides: dict[str, Any] | None = None, system: str | None = None) -> list[int]:
    """The prompt ids of the HuggingFace processor: the folder's chat template on the OpenAI-style
    messages, images resized as our vLLM engine resizes them, then the processor."""
    from PIL import Image
    from transformers import AutoProcessor

    from mede2_plugin.core.media import (
        DEFAULT_MAX_PIXELS,
        DEFAULT_MIN_PIXELS,
        preprocess_image,
    )

    processor = AutoProcessor.from_pretrained(model_dir, **(tokenizer_overrides or {}))
    text = processor.apply_chat_template(served_messages(q, system, embed_images=False), tokenize=False,
                                         add_generation_prompt=True)
    images = [preprocess_image(Image.open(p), model_args.get("image_max_pixels", DEFAULT_MAX_PIXELS),
                               model_args.get("image_min_pixels", DEFAULT_MIN_PIXELS), family) for p in q.images]
    kwargs = {"crop_to_patches": bool(model_args.get("crop_to_patches", False))} if family == "internvl" else {}
    encoded = processor(text=[text], images=images or None, **kwargs)
    return list(encoded["input_ids"][0])


def run_vllm_worker(python: Path, engine_config: dict[str, Any], requests: list[dict[str, Any]],
                    workdir: Path, timeout_s: float = 300) -> dict[str, dict[str, Any]]:
    """One batch through ``python -m mede2_plugin.engines.vllm_worker`` in the vLLM environment."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "engine.json").write_text(json.dumps(engine_config))
    with open(workdir / "requests.jsonl", "w") as handle:
        handle.writelines(json.dumps(request) + "\n" for request in requests)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(
        [str(python), "-m", "mede2_plugin.engines.vllm_worker", "--config", str(workdir / "engine.json"),
         "--requests", str(workdir / "requests.jsonl"), "--output", str(workdir / "results.jsonl")],
        capture_output=True, text=True, timeout=timeout_s, env=env, cwd=workdir, check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    rows = [json.loads(line) for line in (workdir / "results.jsonl").read_text().splitlines()]
    return {row["id"]: row for row in rows}
