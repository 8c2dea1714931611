"""``formatting: mede2_judged``: preference pairs built when LLaMA-Factory loads a judged file.

A ``dataset_info.json`` entry points at a judged-questions file (``mede2 judge`` output, one row
per question holding all its candidates) and carries the pairing policy under ``mede2_pairing``::

    "mede2_stage2_judged": {
      "file_name": "/abs/or/relative/judged.jsonl", "formatting": "mede2_judged", "ranking": true,
      "mede2_pairing": {"pairs_per_question": 4, "positive_use": "all",
                        "prefer_hard_negatives": true, "seed": 0}
    }

Change the policy, retrain: no new judge call (the paper's "dynamic" preference curation).

How it fits LLaMA-Factory 0.9.5, which converts a dataset with a per-row ``dataset.map``
(``converter.align_dataset``), so a converter alone turns one question into one row:

* **Rows are expanded before conversion.** :func:`install_row_expansion` wraps
  ``llamafactory.data.converter.align_dataset``: for a ``mede2_judged`` dataset it first runs a
  batched ``map`` that turns each question row into its pairs (any number, per the policy), then
  calls the original function, whose per-row converter (:class:`MedE2JudgedConverter`) turns each
  pair into LLaMA-Factory's aligned form. Every other format passes through untouched. Importing
  this module installs the wrapper; because MedE2's registration runs when
  ``llamafactory.data.converter`` finishes importing, before ``llamafactory.data.loader`` binds
  ``align_dataset``, the loader calls the wrapper (and :func:`install_row_expansion` also rebinds
  an already imported loader).
* **The policy is read from the entry itself.** LLaMA-Factory's ``DatasetAttr`` keeps only the
  keys it knows, so :func:`policy_for` re-reads ``dataset_info.json`` from ``dataset_dir`` and
  finds the ``mede2_judged`` entries of this run (``dataset``/``eval_dataset``) whose
  ``file_name`` is this file. Two such entries with different policies are an error (point them
  at two files, e.g. a symlink). No entry found (a hand-built ``DatasetAttr``): defaults, with a
  warning.
* **Registration.** Importing this module registers ``mede2_judged`` and installs the wrapper,
  whichever is imported first, this module or LLaMA-Factory. MedE2's import hook should import it
  with a plain ``import mede2_plugin.llamafactory_ext.judged`` (safe inside the import cycle that arises
  when this module is the first to import LLaMA-Factory; a ``from ... import`` there is not).
* **Without the wrapper** (a LLaMA-Factory whose loader changed), the converter still works
  row by row: each question gives its first pair under the policy (a cap of 1), a question
  without a pair gives an empty row that LLaMA-Factory's pairwise processor drops; a warning
  says so once.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from llamafactory.data import converter as lf_converter
from llamafactory.data.converter import DATASET_CONVERTERS, DatasetConverter
from llamafactory.extras import logging as lf_logging

from mede2_plugin.core.chat_format import IMAGE_PLACEHOLDER, system_prompt
from mede2_plugin.mmrp.pairs import PairingPolicy, native_row, question_pairs

FORMAT_NAME = "mede2_judged"
POLICY_KEY = "mede2_pairing"
PAIR_COLUMNS = ("id", "question_id", "system", "prompt", "images", "chosen", "rejected")

# a child of LLaMA-Factory's library logger, so messages print in its format during training
logger = lf_logging.get_logger("llamafactory.data.mede2_judged")


class JudgedDatasetError(ValueError):
    """A judged dataset or entry that cannot be turned into pairs; the message names the file."""


def _dataset_info(data_args: Any) -> dict[str, Any]:
    dataset_dir = getattr(data_args, "dataset_dir", None)
    if isinstance(dataset_dir, dict):
        return dataset_dir
    if not dataset_dir or dataset_dir == "ONLINE" or str(dataset_dir).startswith("REMOTE:"):
        return {}
    path = os.path.join(dataset_dir, "dataset_info.json")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError):
        return {}


def policy_for(dataset_attr: Any, data_args: Any) -> PairingPolicy:
    """The pairing policy of the ``mede2_judged`` entry of this run that points at this file."""
    info = _dataset_info(data_args)
    names = list(getattr(data_args, "dataset", None) or []) + list(getattr(data_args, "eval_dataset", None) or [])
    found: dict[str, dict[str, Any]] = {}
    for name in names:
        entry = info.get(name)
        if (isinstance(entry, dict) and entry.get("formatting") == FORMAT_NAME
                and entry.get("file_name") == dataset_attr.dataset_name):
            found[name] = entry.get(POLICY_KEY) or {}
    if not found:
        logger.warning("%s: no %s entry found in dataset_info.json for this file; default pairing policy",
                       dataset_attr.dataset_name, FORMAT_NAME)
        return PairingPolicy()
    policies = {name: PairingPolicy.from_dict(p, where=f"dataset_info.json entry {name!r}: {POLICY_KEY}")
                for name, p in found.items()}
    distinct = {json.dumps(p.to_dict(), sort_keys=True) for p in policies.values()}
    if len(distinct) > 1:
        raise JudgedDatasetError(
            f"{dataset_attr.dataset_name}: entries {sorted(policies)} point at the same judged file with different "
            f"{POLICY_KEY}; point each at its own file (a copy or symlink)")
    return next(iter(policies.values()))


def _check_row(row: dict[str, Any], where: str) -> None:
    for key, kind in (("id", (str, int)), ("prompt", str), ("images", list), ("candidates", list)):
        if not isinstance(row.get(key), kind):
            raise JudgedDatasetError(f"{where}: question {row.get('id', '<no id>')!r}: field {key!r} must be a "
                                     f"{kind.__name__ if isinstance(kind, type) else 'str or int'}")


@dataclass
class PairExpander:
    """Batched ``map`` function: judged-question rows in, one row per preference pair out."""

    policy: dict[str, Any]
    where: str

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        policy = PairingPolicy.from_dict(self.policy)
        out: dict[str, list[Any]] = {column: [] for column in PAIR_COLUMNS}
        for values in zip(*batch.values()):
            row = dict(zip(batch.keys(), values))
            _check_row(row, self.where)
            for pair in question_pairs(row, policy).pairs:
                record = native_row(row, pair)
                for column in PAIR_COLUMNS:
                    out[column].append(record[column])
        return out


def expand_judged_dataset(dataset: Any, dataset_attr: Any, data_args: Any, training_args: Any = None) -> Any:
    """One row per preference pair of a judged-questions dataset (``Dataset`` or ``IterableDataset``)."""
    from datasets import Dataset, Features, List, Value

    if not dataset_attr.ranking:
        raise JudgedDatasetError(f"{dataset_attr.dataset_name}: formatting {FORMAT_NAME} needs \"ranking\": true")
    policy = policy_for(dataset_attr, data_args)
    features = Features({"id": Value("string"), "question_id": Value("string"), "system": Value("string"),
                         "prompt": Value("string"), "images": List(Value("string")),
                         "chosen": Value("string"), "rejected": Value("string")})
    kwargs: dict[str, Any] = {}
    if isinstance(dataset, Dataset):
        kwargs = {"num_proc": getattr(data_args, "preprocessing_num_workers", None),
                  "desc": f"Building MMRP preference pairs ({policy.positive_use}, "
                          f"cap {policy.pairs_per_question}, seed {policy.seed})"}
        if training_args is not None:
            kwargs["load_from_cache_file"] = (not data_args.overwrite_cache) or (training_args.local_process_index != 0)
    column_names = list(dataset.column_names or next(iter(dataset)).keys())
    expanded = dataset.map(PairExpander(policy.to_dict(), dataset_attr.dataset_name), batched=True,
                           remove_columns=column_names, features=features, **kwargs)
    if isinstance(expanded, Dataset) and len(expanded) == 0:
        raise JudgedDatasetError(
            f"{dataset_attr.dataset_name}: no preference pair under policy {policy.to_dict()} "
            f"({len(dataset)} questions; none has both a positive and a negative candidate)")
    if isinstance(expanded, Dataset):
        logger.info("%s: %d questions -> %d preference pairs under %s", dataset_attr.dataset_name, len(dataset),
                    len(expanded), policy.to_dict())
    return expanded


@dataclass
class MedE2JudgedConverter(DatasetConverter):
    """A preference pair (expanded from a judged question) -> LLaMA-Factory's pairwise aligned form."""

    @cached_property
    def policy(self) -> PairingPolicy:
        return policy_for(self.dataset_attr, self.data_args)

    def _where(self, example: dict[str, Any]) -> str:
        return f"{self.dataset_attr.dataset_name}: record {example.get('id', '<no id>')!r}"

    def __call__(self, example: dict[str, Any]) -> dict[str, Any]:
        if not self.dataset_attr.ranking:
            raise JudgedDatasetError(f"{self._where(example)}: formatting {FORMAT_NAME} needs \"ranking\": true")
        if "candidates" in example:  # the row expansion is not active: one pair per question
            _warn_unexpanded()
            _check_row(example, str(self.dataset_attr.dataset_name))
            pairs = question_pairs(example, self.policy).pairs
            if not pairs:
                return self._aligned(example, [], [], "")
            example = native_row(example, pairs[0])
        for key in ("prompt", "chosen", "rejected"):
            if not isinstance(example.get(key), str) or not example[key].strip():
                raise JudgedDatasetError(f"{self._where(example)}: field {key!r} must be a non-empty string")
        images = list(example.get("images") or [])
        prompt = example["prompt"]
        found = prompt.count(IMAGE_PLACEHOLDER)
        if found == 0:
            prompt = IMAGE_PLACEHOLDER * len(images) + prompt
        elif found != len(images):
            raise JudgedDatasetError(f"{self._where(example)}: {found} {IMAGE_PLACEHOLDER} placeholders for "
                                     f"{len(images)} images")
        response = [{"role": "assistant", "content": example["chosen"]},
                    {"role": "assistant", "content": example["rejected"]}]
        return self._aligned(example, [{"role": "user", "content": prompt}], response, images)

    def _aligned(self, example: dict[str, Any], prompt: list, response: list, images: Any) -> dict[str, Any]:
        return {
            "_prompt": prompt,
            "_response": response,
            "_system": example.get("system") or system_prompt(),
            "_tools": "",
            "_images": self._find_medias(list(images)) if images else None,
            "_videos": None,
            "_audios": None,
        }


@functools.lru_cache(maxsize=1)
def _warn_unexpanded() -> None:
    logger.warning("%s: LLaMA-Factory's align_dataset is not wrapped by mede2_plugin.llamafactory_ext.judged; "
                   "each question gives at most one pair (its first under the policy)", FORMAT_NAME)


def _wrap(original: Any) -> Any:
    @functools.wraps(original)
    def align_dataset(dataset, dataset_attr, data_args, training_args):
        if getattr(dataset_attr, "formatting", None) == FORMAT_NAME:
            dataset = expand_judged_dataset(dataset, dataset_attr, data_args, training_args)
        return original(dataset, dataset_attr, data_args, training_args)

    align_dataset.__mede2_wrapped__ = original  # type: ignore[attr-defined]
    return align_dataset


def install_row_expansion() -> bool:
    """Wrap LLaMA-Factory's ``align_dataset`` (idempotent); return True when it is wrapped."""
    # LLaMA-Factory internal: llamafactory.data.converter.align_dataset(dataset, dataset_attr, data_args,
    # training_args) and its binding in llamafactory.data.loader (see INTERNALS in llamafactory_ext/__init__.py)
    current = lf_converter.align_dataset
    if not hasattr(current, "__mede2_wrapped__"):
        lf_converter.align_dataset = _wrap(current)
    wrapped = lf_converter.align_dataset
    loader = sys.modules.get("llamafactory.data.loader")
    if loader is not None and getattr(loader, "align_dataset", None) is getattr(wrapped, "__mede2_wrapped__", None):
        loader.align_dataset = wrapped
    return True


def row_expansion_active() -> bool:
    """Whether the loader LLaMA-Factory uses calls the wrapped ``align_dataset``."""
    from llamafactory.data import loader

    return hasattr(getattr(loader, "align_dataset", None), "__mede2_wrapped__")


def register() -> None:
    """Register ``mede2_judged`` and wrap ``align_dataset`` (idempotent; runs on import)."""
    DATASET_CONVERTERS.setdefault(FORMAT_NAME, MedE2JudgedConverter)
    install_row_expansion()


register()
