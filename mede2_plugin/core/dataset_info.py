"""Merge dataset entries into a LLaMA-Factory ``dataset_info.json``, idempotently and safely.

Used by every stage that writes a dataset (``mede2 distill``, ``mede2 pairs``), by
``mede2 resources`` and by ``mede2 register --dataset-dir DIR`` for another project
(:mod:`mede2_plugin.llamafactory_ext.register`): their
entries are kept, an identical entry is left alone, a different entry of the same name is
refused unless ``force``. The file is updated under a lock and replaced atomically in its own
JSON style (:func:`mede2_plugin.core.files.update_json`), so two runs at once lose nothing, a
symlinked ``dataset_info.json`` stays a link, its mode is kept and a read-only one is refused.

Entries taken from another folder (``source_dir``) either keep pointing at their files there
(paths rewritten relative to the target) or have their files copied into the target folder
(``copy_files``): the data file or folder of each entry and the images, videos and audios its
JSON/JSONL records name by a relative path inside ``source_dir``, in the same layout. Sources
inside an installed package (site-packages) are always copied: a path into site-packages breaks
on upgrade, uninstall or a moved environment, so none is ever written.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mede2_plugin.core.files import atomic_writer, read_json, update_json

DATASET_INFO = "dataset_info.json"
MEDIA_COLUMNS = ("images", "videos", "audios")


class RegistrationConflict(ValueError):
    """A different entry or file of the same name already exists in the target folder."""


@dataclass
class MergeReport:
    target: Path
    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    copied: list[Path] = field(default_factory=list)


def read_dataset_info(dataset_dir: str | Path) -> dict[str, Any]:
    """The ``dataset_info.json`` of a folder (empty when missing); a broken file names itself."""
    path = Path(dataset_dir) / DATASET_INFO
    if not path.exists():
        return {}
    info, _ = read_json(path)
    _check_object(info, path)
    return info


def _check_object(info: Any, path: Path) -> None:
    if not isinstance(info, dict):
        raise ValueError(f"{path}: expected a JSON object of dataset entries")


def installed_roots() -> list[Path]:
    """Folders of installed packages: site-packages (system, venv, user) and this package's own."""
    import site
    import sysconfig

    roots = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    roots.update(site.getsitepackages())
    roots.add(site.getusersitepackages())
    roots.add(str(Path(__file__).resolve().parents[1]))
    return [Path(root).resolve() for root in roots]


def inside_installed_package(path: str | Path) -> bool:
    """True when ``path`` lies in site-packages or in the installed ``mede2_plugin`` package."""
    resolved = Path(path).resolve()
    return any(resolved.is_relative_to(root) for root in installed_roots())


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


def _records(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a ``.json`` (list) or ``.jsonl`` data file; other formats have none we read."""
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as err:
                        raise ValueError(f"{path}: line {number}: not valid JSON ({err.msg})") from None
    elif path.suffix == ".json":
        data, _ = read_json(path)
        yield from data if isinstance(data, list) else []


def _media_paths(record: Any, columns: list[str]) -> Iterator[str]:
    if not isinstance(record, dict):
        return
    for column in columns:
        value = record.get(column)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and item and not os.path.isabs(item) and "://" not in item:
                yield item


def _entry_files(name: str, entry: dict[str, Any], source_dir: Path) -> list[Path]:
    """Files of one entry to copy, relative to ``source_dir``: data file(s) and the media they name.

    Media resolve as at load time (against the data file's folder, then ``source_dir``, LLaMA-
    Factory's ``media_dir``); a path that leads outside ``source_dir`` is never read or copied.
    """
    file_name = entry.get("file_name")
    if not file_name or entry.get("load_from", "file") != "file" or os.path.isabs(file_name):
        return []
    root = source_dir.resolve()
    data = (root / file_name).resolve()
    if not data.is_relative_to(root) or not data.exists():
        raise ValueError(f"{source_dir / DATASET_INFO}: entry {name!r}: file_name {file_name!r} "
                         f"is not a file or folder inside {source_dir}")
    data_files = sorted(p for p in data.rglob("*") if p.is_file()) if data.is_dir() else [data]
    columns = entry.get("columns") or {}
    media_columns = [columns.get(kind, kind) for kind in MEDIA_COLUMNS]
    found = {p.relative_to(root) for p in data_files}
    for data_file in data_files:
        for record in _records(data_file):
            for media in _media_paths(record, media_columns):
                for base in (data_file.parent, root):
                    candidate = (base / media).resolve()
                    if candidate.is_relative_to(root) and candidate.is_file():
                        found.add(candidate.relative_to(root))
                        break
    return sorted(found)


def _plan_copies(names: list[str], entries: dict[str, dict[str, Any]], source_dir: Path, target_dir: Path,
                 force: bool) -> list[tuple[Path, Path]]:
    """(source, target) files still to copy; refuses to overwrite a different file unless ``force``."""
    copies, clashes = [], []
    for relative in sorted({p for name in names for p in _entry_files(name, entries[name], source_dir)}):
        source, target = source_dir / relative, target_dir / relative
        if target.exists() and filecmp.cmp(source, target, shallow=False):
            continue
        if target.exists() and not force:
            clashes.append(str(relative))
        copies.append((source, target))
    if clashes:
        raise RegistrationConflict(f"{target_dir}: files {clashes} already exist with other content; "
                                   "move them or pass --force to overwrite them")
    return copies


def merge_dataset_info(dataset_dir: str | Path, entries: dict[str, dict[str, Any]],
                       source_dir: str | Path | None = None, force: bool = False,
                       copy_files: bool = False) -> MergeReport:
    """Merge ``entries`` into ``dataset_dir/dataset_info.json`` (created when missing).

    Entries from ``source_dir`` have their files copied into ``dataset_dir`` (``copy_files``,
    forced for a source inside an installed package) or their ``file_name`` rewritten relative
    to ``dataset_dir``. Raises :class:`RegistrationConflict` (and changes nothing) when a name
    exists with another definition, or a copy would overwrite another file, and ``force`` is false.
    """
    target_dir = Path(dataset_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    source = Path(source_dir) if source_dir is not None else None
    copy_files = copy_files or (source is not None and inside_installed_package(source))
    report = MergeReport(target=target_dir / DATASET_INFO)

    def change(info: Any) -> dict[str, Any] | None:
        _check_object(info, report.target)
        new, conflicts = {}, []
        for name, entry in entries.items():
            entry = dict(entry) if copy_files else _relocate(entry, source, target_dir)
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
            new[name] = entry
        if conflicts:
            raise RegistrationConflict(
                f"{report.target}: entries {conflicts} already exist with a different definition; "
                "rename them or pass --force to replace them")
        changed = [*report.added, *report.replaced]
        if copy_files and source is not None:
            for src, dst in _plan_copies(changed, entries, source, target_dir, force):
                dst.parent.mkdir(parents=True, exist_ok=True)
                with src.open("rb") as handle, atomic_writer(dst) as out:
                    shutil.copyfileobj(handle, out)
                report.copied.append(dst)
        if not new:
            return None
        info.update(new)
        return info

    update_json(report.target, change)
    return report
