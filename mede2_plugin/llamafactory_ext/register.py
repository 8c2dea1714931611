"""Merge MedE2 dataset entries into a LLaMA-Factory ``dataset_info.json``, idempotently.

Used by every stage that writes a dataset (``mede2 distill``, ``mede2 pairs``) and by
``mede2 register --dataset-dir DIR`` for another project: their entries are kept, an identical
entry is left alone, a different entry of the same name is refused unless ``force``.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATASET_INFO = "dataset_info.json"


class RegistrationConflict(ValueError):
    """A different entry of the same name already exists in the target ``dataset_info.json``."""


@dataclass
class MergeReport:
    target: Path
    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)


def read_dataset_info(dataset_dir: str | Path) -> dict[str, Any]:
    """The ``dataset_info.json`` of a folder (empty when missing); a broken file names itself."""
    path = Path(dataset_dir) / DATASET_INFO
    if not path.exists():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(info, dict):
        raise ValueError(f"{path}: expected a JSON object of dataset entries")
    return info


def _relocate(entry: dict[str, Any], source_dir: Path | None, target_dir: Path) -> dict[str, Any]:
    """Point ``file_name`` at the same file when the entry moves from source_dir to target_dir."""
    entry = dict(entry)
    file_name = entry.get("file_name")
    if source_dir is None or not file_name or entry.get("load_from", "file") != "file":
        return entry
    path = Path(file_name)
    if not path.is_absolute():
        path = (source_dir / path).resolve()
    try:
        entry["file_name"] = os.path.relpath(path, target_dir.resolve())
    except ValueError:  # another drive on Windows
        entry["file_name"] = str(path)
    return entry


def merge_dataset_info(dataset_dir: str | Path, entries: dict[str, dict[str, Any]],
                       source_dir: str | Path | None = None, force: bool = False) -> MergeReport:
    """Merge ``entries`` into ``dataset_dir/dataset_info.json`` (created when missing).

    ``file_name`` of entries coming from ``source_dir`` is rewritten relative to ``dataset_dir``.
    Raises :class:`RegistrationConflict` (and writes nothing) when a name exists with another
    definition and ``force`` is false.
    """
    target_dir = Path(dataset_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    info = read_dataset_info(target_dir)
    report = MergeReport(target=target_dir / DATASET_INFO)
    conflicts = []
    for name, entry in entries.items():
        entry = _relocate(entry, Path(source_dir) if source_dir else None, target_dir)
        if name not in info:
            report.added.append(name)
        elif info[name] == entry:
            report.unchanged.append(name)
            continue
        elif force:
            report.replaced.append(name)
        else:
            conflicts.append(name)
            continue
        info[name] = entry
    if conflicts:
        raise RegistrationConflict(
            f"{report.target}: entries {conflicts} already exist with a different definition; "
            "rename them or pass --force to replace them"
        )
    if report.added or report.replaced:
        tmp = report.target.with_name(DATASET_INFO + ".tmp")
        tmp.write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, report.target)
    return report


def register_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    parser.add_argument("--dataset-dir", required=True,
                        help="the project's LLaMA-Factory dataset folder (its dataset_info.json is updated)")
    parser.add_argument("--from", dest="source", default=None,
                        help="folder (or dataset_info.json) whose MedE2 entries to merge; default: the "
                             "bundled tiny sample datasets (examples/tiny/data)")
    parser.add_argument("--only", nargs="+", default=None, help="merge only these entry names")
    parser.add_argument("--force", action="store_true",
                        help="replace entries of the same name that differ (default: refuse)")

    def run(args: argparse.Namespace) -> int:
        from mede2_plugin.resources import examples_dir

        source = Path(args.source) if args.source else examples_dir() / "tiny" / "data"
        source_dir = source.parent if source.name == DATASET_INFO else source
        entries = read_dataset_info(source_dir)
        if not entries:
            parser.error(f"no dataset entries found in {source_dir / DATASET_INFO}")
        if args.only:
            missing = sorted(set(args.only) - set(entries))
            if missing:
                parser.error(f"{source_dir / DATASET_INFO} has no entries {missing}")
            entries = {k: v for k, v in entries.items() if k in args.only}
        try:
            report = merge_dataset_info(args.dataset_dir, entries, source_dir=source_dir, force=args.force)
        except RegistrationConflict as err:
            print(f"error: {err}")
            return 1
        print(f"{report.target}: added {report.added or '-'}, unchanged {report.unchanged or '-'}, "
              f"replaced {report.replaced or '-'}")
        return 0

    return run
