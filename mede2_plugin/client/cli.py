"""Backend flags shared by every stage CLI, and ``mede2 batch``.

``add_backend_arguments(parser, prefix="judge")`` adds ``--judge-backend``, ``--judge-model``,
``--judge-base-url``, ... (no prefix: ``--backend``, ``--model``, ...); ``--PREFIX-config
YAML`` loads a :class:`BackendConfig` file that the other flags then override.
``backend_config_from_args(args, prefix="judge")`` turns the parsed flags into a config.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mede2_plugin.client.config import (
    BACKEND_NAMES,
    BackendConfig,
    ChatRequest,
    RequestError,
    load_backend_config,
)
from mede2_plugin.core.media import (
    MediaPolicy,
    MediaRefused,
    map_image_urls,
    refused_url,
)
from mede2_plugin.core.stage_cli import field_docs, first_sentence, strip_optional


def _backend_flags() -> list[tuple[str, str, Any, str]]:
    """``(flag suffix, BackendConfig field, type, help)`` of every plain field, from the field's
    documentation and default (``timeout_s`` -> ``--timeout``; ``progress`` is ``--no-progress``)."""
    docs = field_docs(BackendConfig)
    hints = typing.get_type_hints(BackendConfig)
    flags = []
    for item in dataclasses.fields(BackendConfig):
        kind = strip_optional(hints[item.name])
        if kind not in (str, int, float):
            continue
        text = first_sentence(docs.get(item.name, "")).replace("``", "")
        if item.default not in (None, dataclasses.MISSING, ""):
            text += f" (default {item.default})"
        flags.append((re.sub(r"_s$", "", item.name).replace("_", "-"), item.name, kind, text))
    return flags


_FLAGS = _backend_flags()


def _dest(prefix: str | None, name: str) -> str:
    return (f"{prefix}_{name}" if prefix else name).replace("-", "_")


def _flag(prefix: str | None, name: str) -> str:
    return f"--{prefix}-{name}" if prefix else f"--{name}"


def add_backend_arguments(parser: argparse.ArgumentParser, prefix: str | None = None,
                          role: str | None = None) -> None:
    """Add the backend flags (all optional, default None so a YAML config can fill them)."""
    title = f"{role or prefix or 'model'} backend"
    group = parser.add_argument_group(title, f"where the {role or prefix or 'model'} calls go")
    group.add_argument(_flag(prefix, "config"), dest=_dest(prefix, "config"), metavar="YAML",
                       help="BackendConfig YAML file; the flags below override it")
    for name, field_name, kind, help_text in _FLAGS:
        extra: dict[str, Any] = {"choices": BACKEND_NAMES} if name == "backend" else {}
        group.add_argument(_flag(prefix, name), dest=_dest(prefix, field_name), type=kind, default=None,
                           help=help_text, **extra)
    group.add_argument(_flag(prefix, "engine-arg"), dest=_dest(prefix, "engine_arg"), action="append",
                       metavar="KEY=VALUE", default=None,
                       help="engine argument (local: e.g. template=qwen2_vl; vllm: LLM kwargs; openai: "
                            "image_max_pixels/image_min_pixels/model_family resize images as in training); "
                            "repeatable, VALUE parsed as JSON when possible")
    group.add_argument(_flag(prefix, "no-progress"), dest=_dest(prefix, "no_progress"), action="store_true",
                       help="no progress bar")


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def backend_config_from_args(args: argparse.Namespace, prefix: str | None = None,
                             **defaults: Any) -> BackendConfig:
    """A :class:`BackendConfig` from the flags of :func:`add_backend_arguments`.

    Precedence: flags, then the YAML file, then ``defaults`` (e.g. a stage's default model).
    """
    values: dict[str, Any] = {}
    config_path = getattr(args, _dest(prefix, "config"), None)
    for _, field_name, _, _ in _FLAGS:
        value = getattr(args, _dest(prefix, field_name), None)
        if value is not None:
            values[field_name] = value
    engine_args = getattr(args, _dest(prefix, "engine_arg"), None)
    if engine_args:
        parsed = {}
        for item in engine_args:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"{_flag(prefix, 'engine-arg')} expects KEY=VALUE, got {item!r}")
            parsed[key.strip()] = _parse_value(value)
        values["engine_args"] = parsed
    if getattr(args, _dest(prefix, "no_progress"), False):
        values["progress"] = False
    try:
        if config_path:
            base = load_backend_config(config_path)
            if "engine_args" in values:
                values["engine_args"] = {**base.engine_args, **values["engine_args"]}
            return base.replace(**values)
        return load_backend_config({**defaults, **values})
    except ValueError as err:  # name the flag the user typed, not only the field
        message = str(err).removeprefix("config: ")
        flag = next((_flag(prefix, name) for name, field_name, _, _ in _FLAGS
                     if field_name in values and message.startswith((f"{field_name} ", f"{field_name}: "))), None)
        raise ValueError(f"{flag}: {message}" if flag else message) from None


def read_requests(path: str | Path, allow_outside_media: bool = False) -> list[ChatRequest]:
    """Requests from a JSONL file, every field checked before anything is sent; an error names
    the file and line (``requests.jsonl:7: ...``), a repeated id both lines.

    Besides the :class:`ChatRequest` fields a line may carry ``images``: local paths (relative to
    the file's folder) or URLs, added as ``image_url`` parts before the text of the last user turn.
    Every local image (an ``images`` entry, or an ``image_url`` part with a path or ``file://`` URI)
    must lie inside the file's folder and decode as an image, unless ``allow_outside_media``
    (:class:`~mede2_plugin.core.media.MediaPolicy`); a refused one fails its request alone, with the
    reason, and nothing of it is sent.
    """
    from mede2_plugin.core.jsonl import read_jsonl
    from mede2_plugin.core.media import MediaPolicy

    path = Path(path)
    media = MediaPolicy.of(path.resolve().parent, allow_outside=allow_outside_media)
    requests = []
    lines: dict[str, int] = {}
    for number, record in read_jsonl(path, with_lines=True):
        try:
            images = record.pop("images", None) or []
            request = ChatRequest.from_dict(record)
            request.messages = map_image_urls(request.messages, lambda url: _contained(url, media))
            if images:
                _attach_images(request, images, media)
        except (TypeError, ValueError) as err:
            raise RequestError(f"{path}:{number}: {err}") from None
        if request.id in lines:
            raise RequestError(f"{path}:{number}: duplicate id {request.id!r}, first on line {lines[request.id]} "
                               "(ids are compared as strings: 1 and \"1\" are the same id)")
        lines[request.id] = number
        requests.append(request)
    return requests


def _contained(reference: str, media: MediaPolicy) -> str:
    """A local image as it may be read, or a stand-in that fails its request with the reason."""
    try:
        return media.resolve(reference)
    except MediaRefused as err:
        return refused_url(str(err))


def _attach_images(request: ChatRequest, images: list[str], media: MediaPolicy) -> None:
    parts = [{"type": "image_url", "image_url": {"url": _contained(image, media)}} for image in images]
    for message in reversed(request.messages):
        if message.get("role") == "user":
            content = message.get("content")
            text_parts = [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
            message["content"] = parts + text_parts
            return
    raise ValueError("'images' given but the request has no user message")


#: a folder with less free space than this is refused before any call
MIN_FREE_BYTES = 1 << 20


def check_writable(path: str | Path, flag: str) -> None:
    """Refuse, before any call, an output path that is a folder, or whose folder cannot take a
    file (no permission, read-only file system, full disk): a small file is written, synced and
    removed there. Creates the folder when missing, as the output itself would."""
    import tempfile

    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{flag} {path}: is a folder; give a file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent, prefix=".mede2-probe-") as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
        free = shutil.disk_usage(path.parent).free
    except OSError as err:
        raise OSError(f"{flag} {path}: cannot write in {path.parent} ({err.strerror or err})") from None
    if free < MIN_FREE_BYTES:
        raise OSError(f"{flag} {path}: only {free} bytes free in {path.parent} (the disk is nearly full)")
    if path.exists() and not os.access(path, os.W_OK):
        raise PermissionError(f"{flag} {path}: the file is read-only")


def batch_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """``mede2 batch --input REQUESTS.jsonl --output RESULTS.jsonl --backend ... --model ...``

    Bad input (a request line, a flag, the output or summary path, a missing API key, a budget
    without a price) raises a ``ValueError`` / ``OSError`` naming the file and line before any
    call: ``mede2`` prints it as one line and exits with status 2 (:mod:`mede2_plugin.cli`).
    """
    parser.add_argument("--input", required=True, help="JSONL of chat requests, one per line, each with an 'id'")
    parser.add_argument("--output", required=True, help="JSONL of results, one row per id (appended, resumable)")
    parser.add_argument("--stage", default="batch", help="label for progress, rows and the summary")
    parser.add_argument("--summary", help="also write the run summary JSON here (its folder is created)")
    parser.add_argument("--allow-outside-media", action="store_true",
                        help="read images outside the input file's folder too (absolute paths, file:// URIs, '..'); "
                             "off, such a request fails with the reason and is not sent")
    add_backend_arguments(parser)

    def handler(args: argparse.Namespace) -> int:  # user errors (ValueError, OSError): one line, exit 2
        from mede2_plugin.client.batch import run_batch
        from mede2_plugin.core.files import atomic_write_text

        config = backend_config_from_args(args)
        requests = read_requests(args.input, args.allow_outside_media)
        check_writable(args.output, "--output")
        if args.summary:
            check_writable(args.summary, "--summary")
        summary = run_batch(requests, args.output, config, stage=args.stage)
        text = json.dumps(summary.to_dict(), indent=2)
        if args.summary:
            atomic_write_text(args.summary, text + "\n")
        print(summary.line(), file=sys.stderr)
        print(text)
        return 0 if summary.failed == 0 and summary.not_attempted == 0 else 1

    return handler
