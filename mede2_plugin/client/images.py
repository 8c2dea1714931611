"""Images inside OpenAI-style messages, turned into what each backend wants.

An ``image_url`` part's URL may be a data URL, an http(s) URL, a ``file://`` URI or a plain
local path. OpenAI-compatible servers get data URLs, Gemini gets inline bytes, in-process engines
get PIL images; the cache key gets a content hash, so the same picture given as a path or as a
data URL is the same request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import mimetypes
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

IMAGE_PLACEHOLDER = "<image>"


def image_url(part: dict[str, Any]) -> str | None:
    """The URL of an ``image_url`` (or ``image``) content part, else None."""
    kind = part.get("type")
    if kind == "image_url":
        value = part.get("image_url")
        return value.get("url") if isinstance(value, dict) else value
    if kind == "image":
        return part.get("image") or part.get("url")
    return None


def _local_path(url: str) -> Path | None:
    if url.startswith("file://"):
        return Path(urllib.parse.unquote(urllib.parse.urlparse(url).path))
    if url.startswith(("data:", "http://", "https://")):
        return None
    return Path(url)


def load_image(url: str, timeout_s: float = 60.0) -> tuple[bytes, str]:
    """Bytes and MIME type of an image URL, data URL or local path."""
    if url.startswith("data:"):
        header, _, payload = url.partition(",")
        mime = header[5:].split(";")[0] or "image/png"
        try:
            data = base64.b64decode(payload, validate=False) if ";base64" in header else \
                urllib.parse.unquote_to_bytes(payload)
        except binascii.Error as err:
            raise ValueError(f"bad base64 in an image data URL: {err}") from None
        return data, mime
    path = _local_path(url)
    if path is not None:
        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path}")
        return path.read_bytes(), mimetypes.guess_type(path.name)[0] or "image/png"
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # http(s) URL
        mime = response.headers.get_content_type() or "image/png"
        return response.read(), mime


def to_data_url(url: str) -> str:
    """Data and http(s) URLs unchanged; local files read into a base64 data URL."""
    if url.startswith(("data:", "http://", "https://")):
        return url
    data, mime = load_image(url)
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def content_hash(url: str) -> str:
    """sha256 of the image bytes (data URL or local file); of the address for http(s) URLs."""
    if url.startswith(("http://", "https://")):
        return "url:" + hashlib.sha256(url.encode("utf-8")).hexdigest()
    data, _ = load_image(url)
    return "sha256:" + hashlib.sha256(data).hexdigest()


def to_pil(url: str) -> Any:
    """A PIL image (RGB) for any supported URL."""
    from PIL import Image

    data, _ = load_image(url)
    return Image.open(io.BytesIO(data)).convert("RGB")


def message_text(content: Any) -> str:
    """The text of a message's content (string or parts), images left out."""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [] if p.get("type") == "text")


def split_messages(messages: list[dict[str, Any]],
                   placeholder: str = IMAGE_PLACEHOLDER) -> tuple[list[dict[str, str]], list[str]]:
    """Messages with string content (``placeholder`` where each image was) and the image URLs."""
    flat: list[dict[str, str]] = []
    images: list[str] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str) or content is None:
            flat.append({"role": message["role"], "content": content or ""})
            continue
        text = ""
        for part in content:
            url = image_url(part)
            if url is not None:
                images.append(url)
                text += placeholder
            elif part.get("type") == "text":
                text += part.get("text", "")
        flat.append({"role": message["role"], "content": text})
    return flat, images


def has_local_images(messages: list[dict[str, Any]]) -> bool:
    """Whether any image part points at a local file (path or ``file://``)."""
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                url = image_url(part)
                if url is not None and _local_path(url) is not None:
                    return True
    return False


def map_image_urls(messages: list[dict[str, Any]], convert: Any) -> list[dict[str, Any]]:
    """A copy of ``messages`` with every image part's URL replaced by ``convert(url)``."""
    out = []
    for message in messages:
        content = message.get("content")
        if not isinstance(content, list):
            out.append(dict(message))
            continue
        parts = []
        for part in content:
            url = image_url(part)
            if url is None:
                parts.append(part)
            else:
                detail = part.get("image_url", {}).get("detail") if isinstance(part.get("image_url"), dict) else None
                new = {"url": convert(url)}
                if detail:
                    new["detail"] = detail
                parts.append({"type": "image_url", "image_url": new})
        out.append({**message, "content": parts})
    return out


#: ``engine_args`` keys that make the ``openai`` backend resize images as LLaMA-Factory did in
#: training (the same keys as the ``vllm`` backend's)
TRAINING_RESIZE_KEYS = ("image_max_pixels", "image_min_pixels", "model_family")


def training_resize_args(engine_args: dict[str, Any]) -> dict[str, Any]:
    """The training-resize settings in ``engine_args`` (empty: send images as they are)."""
    return {k: engine_args[k] for k in TRAINING_RESIZE_KEYS if engine_args.get(k) is not None}


def image_converter(engine_args: dict[str, Any]) -> Callable[[str], str]:
    """``to_data_url``, or a converter that resizes each image as in training first when
    ``engine_args`` sets any of :data:`TRAINING_RESIZE_KEYS`."""
    resize = training_resize_args(engine_args)
    if not resize:
        return to_data_url
    from mede2_plugin.engines.images import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, training_resized_data_url

    max_pixels = int(resize.get("image_max_pixels", DEFAULT_MAX_PIXELS))
    min_pixels = int(resize.get("image_min_pixels", DEFAULT_MIN_PIXELS))
    family = resize.get("model_family")
    return lambda url: training_resized_data_url(url, max_pixels, min_pixels, family)
