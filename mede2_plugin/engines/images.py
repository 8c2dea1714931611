"""LLaMA-Factory's image pre-processing, for engines that run where LLaMA-Factory is not installed.

LLaMA-Factory resizes every image before its processor sees it (``mm_plugin._preprocess_image``):
down to ``image_max_pixels`` and up to ``image_min_pixels`` (training YAML keys; defaults 768*768
and 32*32), then RGB. Its Qwen2-VL plugin also widens sides below 28 pixels and cuts extreme
aspect ratios. vLLM's processor does none of this, so an image served as-is can get a different
number of image tokens (and different pixels) than in training. :func:`preprocess_image` repeats
LLaMA-Factory's steps exactly (a test compares it with LLaMA-Factory's own plugin), so the vLLM
engine feeds the served model what the trained model saw.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

DEFAULT_MAX_PIXELS = 768 * 768  # LLaMA-Factory's ModelArguments.image_max_pixels
DEFAULT_MIN_PIXELS = 32 * 32  # LLaMA-Factory's ModelArguments.image_min_pixels
#: model families whose LLaMA-Factory plugin adds Qwen2-VL's extra steps
QWEN2_VL_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")


def preprocess_image(image: Any, max_pixels: int = DEFAULT_MAX_PIXELS, min_pixels: int = DEFAULT_MIN_PIXELS,
                     family: str | None = None) -> Any:
    """``image`` (PIL) resized and converted as LLaMA-Factory's plugin for ``family`` does."""
    if image.width * image.height > max_pixels:
        factor = math.sqrt(max_pixels / (image.width * image.height))
        image = image.resize((int(image.width * factor), int(image.height * factor)))
    if image.width * image.height < min_pixels:
        factor = math.sqrt(min_pixels / (image.width * image.height))
        image = image.resize((int(image.width * factor), int(image.height * factor)))
    if image.mode != "RGB":
        image = image.convert("RGB")
    if family in QWEN2_VL_FAMILIES:
        if min(image.width, image.height) < 28:
            image = image.resize((max(image.width, 28), max(image.height, 28)))
        if image.width / image.height > 200:
            image = image.resize((image.height * 180, image.height))
        if image.height / image.width > 200:
            image = image.resize((image.width, image.width * 180))
    return image


def training_resized_data_url(url: str, max_pixels: int = DEFAULT_MAX_PIXELS,
                              min_pixels: int = DEFAULT_MIN_PIXELS, family: str | None = None) -> str:
    """The image at ``url`` (data URL, http(s), file) resized as in training, as a PNG data URL."""
    from PIL import Image

    from mede2_plugin.client.images import load_image

    image = Image.open(io.BytesIO(load_image(url)[0]))
    return png_data_url(preprocess_image(image, max_pixels, min_pixels, family))


def png_data_url(image: Any) -> str:
    """A lossless data URL of a PIL image (the engine decodes exactly these pixels)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def model_family(model_dir: str) -> str | None:
    """``model_type`` from a local model folder's ``config.json`` (None when unknown)."""
    import json
    from pathlib import Path

    path = Path(model_dir) / "config.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("model_type")
