"""Images: where a reference may point, what it holds, and the form each consumer wants.

**Containment.** Every local image a question bank or a ``mede2 batch`` input names goes through
:meth:`MediaPolicy.resolve` before anything is read: a relative path is taken under the data folder
(``base``) and, like an absolute path or a ``file://`` URI, must lie (symlinks followed) inside one
of the policy's ``roots`` (the data folder, ``media_dir``, folders the user names). Anything else is
refused with :class:`MediaRefused` unless the user allows it explicitly (``allow_outside``:
the ``allow_outside_media`` setting, ``--allow-outside-media``). A file that is there must also
decode as an image (PIL ``verify``), allowed or not, so a text file is never sent as a picture.
http(s) and data URLs are not local files and pass unchanged.

**Loading.** An ``image_url`` part's URL may be a data URL, an http(s) URL, a ``file://`` URI or a
plain local path: :func:`load_image` reads any of them; OpenAI-compatible servers get data URLs
(:func:`to_data_url`), Gemini inline bytes, in-process engines PIL images (:func:`to_pil`), the
response cache a content hash (:func:`content_hash`), so the same picture given as a path or as a
data URL is the same request. A reference refused at reading time (:func:`refused_url`) fails when
it is loaded, so the request that holds it fails alone and nothing is sent.

**Training-time resize.** LLaMA-Factory resizes every image before its processor sees it
(``mm_plugin._preprocess_image``): down to ``image_max_pixels`` and up to ``image_min_pixels``
(training YAML keys; defaults 768*768 and 32*32), then RGB; its Qwen2-VL plugin also widens sides
below 28 pixels and cuts extreme aspect ratios. vLLM's processor does none of this, so an image
served as-is can get a different number of image tokens than in training.
:func:`preprocess_image` repeats LLaMA-Factory's steps exactly (a test compares it with
LLaMA-Factory's own plugin); :func:`image_converter` applies it before sending when asked.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import math
import mimetypes
import os
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IMAGE_PLACEHOLDER = "<image>"
REFUSED_SCHEME = "mede2-refused:"
DEFAULT_MAX_PIXELS = 768 * 768  # LLaMA-Factory's ModelArguments.image_max_pixels
DEFAULT_MIN_PIXELS = 32 * 32  # LLaMA-Factory's ModelArguments.image_min_pixels
#: model families whose LLaMA-Factory plugin adds Qwen2-VL's extra steps
QWEN2_VL_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
#: ``engine_args`` keys that make the ``openai`` backend resize images as LLaMA-Factory did in
#: training (the same keys as the ``vllm`` backend's)
TRAINING_RESIZE_KEYS = ("image_max_pixels", "image_min_pixels", "model_family")
ALLOW_HINT = "set allow_outside_media (--allow-outside-media) to allow it"


class MediaRefused(ValueError):
    """An image reference that may not be read (outside the data folders) or is not an image."""


def is_url(reference: str) -> bool:
    """True for data and http(s) URLs: not local files."""
    return reference.startswith(("data:", "http://", "https://"))


def local_path(reference: str) -> Path | None:
    """The local file a reference names (plain path or ``file://`` URI), else None."""
    if reference.startswith("file://"):
        return Path(urllib.parse.unquote(urllib.parse.urlparse(reference).path))
    if is_url(reference) or reference.startswith(REFUSED_SCHEME):
        return None
    return Path(reference)


def refused_url(reason: str) -> str:
    """A stand-in for a refused image: loading it raises :class:`MediaRefused` with ``reason``."""
    return REFUSED_SCHEME + urllib.parse.quote(reason)


def verify_image(path: Path, shown: str | None = None) -> None:
    """Raise :class:`MediaRefused` unless ``path`` decodes as an image (PIL ``verify``)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise MediaRefused(f"image {shown or path}: not a readable image ({type(err).__name__})") from None


@dataclass(frozen=True)
class MediaPolicy:
    """Where the local images of one input may come from.

    Attributes:
        base: folder relative references are taken under (the data folder).
        roots: folders images may lie in (``base`` is always one).
        allow_outside: allow absolute paths, ``file://`` URIs and ``..`` outside ``roots``.
        verify: check that an existing file decodes as an image.
    """

    base: Path | None = None
    roots: tuple[Path, ...] = field(default_factory=tuple)
    allow_outside: bool = False
    verify: bool = True

    @classmethod
    def of(cls, base: str | os.PathLike[str] | None, roots: Iterable[str | os.PathLike[str] | None] = (),
           allow_outside: bool = False, verify: bool = True) -> MediaPolicy:
        """A policy for data under ``base`` (default: the current folder) plus the folders ``roots``
        (None entries ignored)."""
        base_dir = Path(base) if base else Path.cwd()
        folders = [base_dir, *(Path(r) for r in roots if r)]
        return cls(base_dir, tuple(dict.fromkeys(Path(os.path.realpath(f)) for f in folders)), allow_outside, verify)

    def inside(self, path: Path) -> bool:
        real = Path(os.path.realpath(path))
        return any(real == root or real.is_relative_to(root) for root in self.roots)

    def resolve(self, reference: str) -> str:
        """``reference`` as it may be read: URLs unchanged, local ones as an absolute path.

        Raises :class:`MediaRefused` naming the reference and why, before anything is read.
        """
        if is_url(reference):
            return reference
        path = local_path(reference)
        if path is None:
            raise MediaRefused(f"image {reference!r}: not a path or URL")
        relative = not path.is_absolute() and not reference.startswith("file://")
        if relative:
            path = (self.base or Path.cwd()) / path
        path = Path(os.path.abspath(path))
        if not self.allow_outside and not self.inside(path):
            where = ", ".join(str(r) for r in self.roots) or "(no data folder)"
            kind = "leads outside the data folder" if relative else "is outside the data folder"
            raise MediaRefused(f"image {reference!r} {kind} ({where}); {ALLOW_HINT}")
        if self.verify and path.is_file():
            verify_image(path, reference)
        return str(path)

    def check_all(self, references: Iterable[str]) -> list[str]:
        """Every reference resolved (see :meth:`resolve`); the first refusal raises."""
        return [self.resolve(reference) for reference in references]


# -- reading ----------------------------------------------------------------------------------

def image_url(part: dict[str, Any]) -> str | None:
    """The URL of an ``image_url`` (or ``image``) content part, else None."""
    kind = part.get("type")
    if kind == "image_url":
        value = part.get("image_url")
        return value.get("url") if isinstance(value, dict) else value
    if kind == "image":
        return part.get("image") or part.get("url")
    return None


def load_image(url: str, timeout_s: float = 60.0) -> tuple[bytes, str]:
    """Bytes and MIME type of an image URL, data URL or local path."""
    if url.startswith(REFUSED_SCHEME):
        raise MediaRefused(urllib.parse.unquote(url[len(REFUSED_SCHEME):]))
    if url.startswith("data:"):
        header, _, payload = url.partition(",")
        mime = header[5:].split(";")[0] or "image/png"
        try:
            data = base64.b64decode(payload, validate=False) if ";base64" in header else \
                urllib.parse.unquote_to_bytes(payload)
        except binascii.Error as err:
            raise ValueError(f"bad base64 in an image data URL: {err}") from None
        return data, mime
    path = local_path(url)
    if path is not None:
        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path}")
        return path.read_bytes(), mimetypes.guess_type(path.name)[0] or "image/png"
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # http(s) URL
        mime = response.headers.get_content_type() or "image/png"
        return response.read(), mime


def to_data_url(url: str) -> str:
    """Data and http(s) URLs unchanged; local files read into a base64 data URL."""
    if is_url(url):
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


# -- messages ---------------------------------------------------------------------------------

def image_part(image: str, embed: bool = True) -> dict[str, Any]:
    """An OpenAI ``image_url`` content part for a path or URL; local files become data URLs."""
    if embed:
        url = to_data_url(image)
    else:
        url = image if "://" in image or image.startswith("data:") else Path(image).resolve().as_uri()
    return {"type": "image_url", "image_url": {"url": url}}


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
    """Whether any image part is not a data or http(s) URL (a path, ``file://``, a refusal)."""
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                url = image_url(part)
                if url is not None and not is_url(url):
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


# -- LLaMA-Factory's training-time resize -------------------------------------------------------

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


def png_data_url(image: Any) -> str:
    """A lossless data URL of a PIL image (the engine decodes exactly these pixels)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def training_resized_data_url(url: str, max_pixels: int = DEFAULT_MAX_PIXELS,
                              min_pixels: int = DEFAULT_MIN_PIXELS, family: str | None = None) -> str:
    """The image at ``url`` (data URL, http(s), file) resized as in training, as a PNG data URL."""
    from PIL import Image

    image = Image.open(io.BytesIO(load_image(url)[0]))
    return png_data_url(preprocess_image(image, max_pixels, min_pixels, family))


def training_resize_args(engine_args: dict[str, Any]) -> dict[str, Any]:
    """The training-resize settings in ``engine_args`` (empty: send images as they are)."""
    return {k: engine_args[k] for k in TRAINING_RESIZE_KEYS if engine_args.get(k) is not None}


def image_converter(engine_args: dict[str, Any]) -> Callable[[str], str]:
    """``to_data_url``, or a converter that resizes each image as in training first when
    ``engine_args`` sets any of :data:`TRAINING_RESIZE_KEYS`."""
    resize = training_resize_args(engine_args)
    if not resize:
        return to_data_url
    max_pixels = int(resize.get("image_max_pixels", DEFAULT_MAX_PIXELS))
    min_pixels = int(resize.get("image_min_pixels", DEFAULT_MIN_PIXELS))
    family = resize.get("model_family")
    return lambda url: training_resized_data_url(url, max_pixels, min_pixels, family)
