"""MedE2 dataset formats as LLaMA-Factory dataset converters.

``formatting: mede2_sft`` reads native Stage-I records::

    {"id": "...", "question": "...", "options": {"A": "..", ...}, "answer": "B",
     "reasoning": "...", "images": [], "patient_info": "", "final": "\\boxed{B}"  (optional)}

``formatting: mede2_judged`` (see :mod:`mede2_plugin.llamafactory_ext.judged`) builds the preference pairs
from a judged-candidates file when LLaMA-Factory loads it.

``formatting: mede2_pref`` (with ``ranking: true``) reads native preference records::

    {"id": "...", "prompt": "user text", "images": ["a.png"], "chosen": "...", "rejected": "...",
     "system": "..." (optional, default: the paper's system prompt)}

Both produce the paper's Appendix-A conversation: system prompt, user turn with one ``<image>``
per image before the text, assistant ``<think>..</think><answer>..</answer>``. A malformed record
raises an error naming the dataset file and the record id.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llamafactory.data.converter import DATASET_CONVERTERS, DatasetConverter

from mede2_plugin.core.chat_format import (
    IMAGE_PLACEHOLDER,
    assistant_response,
    boxed,
    system_prompt,
    user_prompt,
)


class MedE2RecordError(ValueError):
    """A dataset record that cannot be converted; the message names file and record."""


def _where(converter: DatasetConverter, example: dict[str, Any]) -> str:
    file_name = getattr(converter.dataset_attr, "file_name", None) or converter.dataset_attr.dataset_name
    record = example.get("id", "<no id>")
    return f"{file_name}: record {record!r}"


def _require(converter: DatasetConverter, example: dict[str, Any], fields: dict[str, type]) -> None:
    for name, kind in fields.items():
        value = example.get(name)
        if not isinstance(value, kind) or (isinstance(value, str) and not value.strip()):
            raise MedE2RecordError(
                f"{_where(converter, example)}: field {name!r} must be a non-empty {kind.__name__}, got {value!r:.80}"
            )


def _images(converter: DatasetConverter, example: dict[str, Any]) -> list[str]:
    images = example.get("images") or []
    if not isinstance(images, list) or not all(isinstance(i, str) and i for i in images):
        raise MedE2RecordError(f"{_where(converter, example)}: 'images' must be a list of paths, got {images!r:.80}")
    return images


def _resolve_images(converter: DatasetConverter, images: list[str]) -> list[str] | None:
    """Resolve like LLaMA-Factory (against ``media_dir``), then against the data file's own folder.

    The second rule lets a dataset registered into another project (``mede2 register``) keep
    image paths relative to its own JSONL file.
    """
    if not images:
        return None
    resolved = converter._find_medias(images)
    attr, data_args = converter.dataset_attr, converter.data_args
    if attr.load_from != "file":
        return resolved
    data_file = Path(data_args.dataset_dir) / attr.dataset_name
    base = data_file if data_file.is_dir() else data_file.parent
    return [p if os.path.isfile(p) or not (base / p).is_file() else str(base / p) for p in resolved]


def _with_placeholders(converter: DatasetConverter, example: dict[str, Any], text: str, n_images: int) -> str:
    found = text.count(IMAGE_PLACEHOLDER)
    if found == 0:
        return IMAGE_PLACEHOLDER * n_images + text
    if found != n_images:
        raise MedE2RecordError(
            f"{_where(converter, example)}: {found} {IMAGE_PLACEHOLDER} placeholders for {n_images} images"
        )
    return text


@dataclass
class MedE2SFTConverter(DatasetConverter):
    """Native Stage-I SFT record -> LLaMA-Factory's aligned format."""

    def __call__(self, example: dict[str, Any]) -> dict[str, Any]:
        _require(self, example, {"question": str, "options": dict, "answer": str, "reasoning": str})
        options = {k: v for k, v in example["options"].items() if v is not None}
        if example["answer"] not in options:
            raise MedE2RecordError(
                f"{_where(self, example)}: answer {example['answer']!r} is not one of the options {sorted(options)}"
            )
        images = _images(self, example)
        prompt = user_prompt(question=example["question"], options=options,
                             patient_info=example.get("patient_info") or "")
        final = example.get("final") or boxed(example["answer"])
        return {
            "_prompt": [{"role": "user", "content": IMAGE_PLACEHOLDER * len(images) + prompt}],
            "_response": [{"role": "assistant", "content": assistant_response(example["reasoning"], final)}],
            "_system": example.get("system") or system_prompt(),
            "_tools": "",
            "_images": _resolve_images(self, images),
            "_videos": None,
            "_audios": None,
        }


@dataclass
class MedE2PreferenceConverter(DatasetConverter):
    """Native preference record -> LLaMA-Factory's pairwise aligned format."""

    def __call__(self, example: dict[str, Any]) -> dict[str, Any]:
        _require(self, example, {"prompt": str, "chosen": str, "rejected": str})
        if not self.dataset_attr.ranking:
            raise MedE2RecordError(f"{_where(self, example)}: formatting mede2_pref needs \"ranking\": true")
        for side in ("chosen", "rejected"):
            if IMAGE_PLACEHOLDER in example[side]:
                raise MedE2RecordError(f"{_where(self, example)}: {IMAGE_PLACEHOLDER} may appear only in the prompt")
        images = _images(self, example)
        return {
            "_prompt": [{"role": "user", "content": _with_placeholders(self, example, example["prompt"], len(images))}],
            "_response": [
                {"role": "assistant", "content": example["chosen"]},
                {"role": "assistant", "content": example["rejected"]},
            ],
            "_system": example.get("system") or system_prompt(),
            "_tools": "",
            "_images": _resolve_images(self, images),
            "_videos": None,
            "_audios": None,
        }


CONVERTERS: dict[str, type[DatasetConverter]] = {
    "mede2_sft": MedE2SFTConverter,
    "mede2_pref": MedE2PreferenceConverter,
}


def register() -> None:
    """Add our formats to LLaMA-Factory's registry (idempotent), the judged-candidates one included."""
    # LLaMA-Factory internal: llamafactory.data.converter.DATASET_CONVERTERS (name -> DatasetConverter
    # subclass) and DatasetConverter._find_medias (see INTERNALS in llamafactory_ext/__init__.py)
    for name, converter in CONVERTERS.items():
        DATASET_CONVERTERS.setdefault(name, converter)
    import mede2_plugin.llamafactory_ext.judged  # noqa: F401 - registers "mede2_judged" and its row expansion


register()
