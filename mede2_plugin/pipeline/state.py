"""Content hashes and per-stage state: what lets ``mede2 run`` skip a stage that is up to date.

Every stage has a *fingerprint*: one hash over the content hashes of its input files, its
settings (with the role backends it calls) and the hashes of the prompt templates it renders
(a user's own prompt file, when it replaces one, by its content).
When a stage starts, ``<output_dir>/state/<stage>.json`` records the fingerprint with status
``running``; when it ends, the status (``complete`` / ``incomplete``) and the content hashes of
its outputs. On the next run a stage is

* **skipped** when its state is ``complete``, the fingerprint is the same and every output
  still has the recorded hash;
* **resumed** when the fingerprint is the same but the stage did not finish (killed, failed,
  pending items): its own append-only outputs make it continue where it stopped;
* **redone** when the fingerprint changed (or there is no state): its previous outputs are moved
  to ``<output_dir>/superseded/`` first (nothing is deleted; calls whose request is unchanged
  are answered by the response cache, not paid again).

File hashes are sha256 of the content, remembered in ``state/hashes.json`` by path, size and
modification time so a large model folder is read once per version.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from mede2_plugin.core.files import atomic_write_json
from mede2_plugin.core.stage import StageInputs

SKIP, RESUME, FRESH = "skip", "resume", "fresh"
RUNNING, COMPLETE, INCOMPLETE, FAILED = "running", "complete", "incomplete", "failed"
IGNORED_NAMES = (".mede2-cache", "__pycache__")


def plain_json(value: Any) -> Any:
    """``value`` as JSON data (paths and other objects as their text)."""
    return json.loads(json.dumps(value, ensure_ascii=False, default=str))


def json_hash(value: Any) -> str:
    """sha256 of a JSON-able value in canonical form (sorted keys, no spaces)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ContentHasher:
    """sha256 of files and folders, cached by ``(path, size, mtime_ns)`` in a JSON file."""

    def __init__(self, cache_file: Path | None = None) -> None:
        self.cache_file = cache_file
        self._cache: dict[str, list[Any]] = {}
        self._dirty = False
        if cache_file is not None and cache_file.exists():
            try:
                self._cache = json.loads(cache_file.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, OSError):
                self._cache = {}

    def file(self, path: Path) -> str:
        stat = path.stat()
        key = str(path.resolve())
        cached = self._cache.get(key)
        if cached and cached[0] == stat.st_size and cached[1] == stat.st_mtime_ns:
            return cached[2]
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        value = digest.hexdigest()
        self._cache[key] = [stat.st_size, stat.st_mtime_ns, value]
        self._dirty = True
        return value

    def path(self, path: str | Path) -> str | None:
        """Hash of a file, or of a folder (its files' relative paths and hashes); None if missing."""
        path = Path(path)
        if path.is_file():
            return self.file(path)
        if not path.is_dir():
            return None
        entries = []
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if d not in IGNORED_NAMES)
            for name in sorted(files):
                if name.endswith((".tmp", ".torn", ".lock")):
                    continue
                full = Path(root) / name
                entries.append([full.relative_to(path).as_posix(), self.file(full)])
        return json_hash(entries)

    def many(self, paths: list[str | Path]) -> dict[str, str | None]:
        return {str(p): self.path(p) for p in paths}

    def save(self) -> None:
        if self.cache_file is not None and self._dirty:
            atomic_write_json(self.cache_file, self._cache)
            self._dirty = False


def describe(inputs: StageInputs, hasher: ContentHasher) -> dict[str, Any]:
    """Hashes of everything a stage depends on, as recorded in its state and the manifest."""
    from mede2_plugin.core.prompts import template_hashes

    described = {"files": hasher.many(inputs.files), "settings": inputs.settings,
                 "settings_sha256": json_hash(inputs.settings),
                 "templates": template_hashes(inputs.templates, inputs.prompts), "values": dict(inputs.values)}
    if inputs.prompts:
        described["values"]["prompt_files"] = dict(sorted(inputs.prompts.items()))
    return described


def fingerprint(described: dict[str, Any]) -> str:
    """The stage fingerprint: one hash over the described inputs."""
    return json_hash({k: described[k] for k in ("files", "settings_sha256", "templates", "values")})


class StageStore:
    """``<output_dir>/state/<stage>.json`` files and the skip / resume / redo decision."""

    def __init__(self, out: Path, hasher: ContentHasher) -> None:
        self.out = out
        self.folder = out / "state"
        self.hasher = hasher

    def path(self, stage: str) -> Path:
        return self.folder / f"{stage}.json"

    def load(self, stage: str) -> dict[str, Any] | None:
        path = self.path(stage)
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return None

    def outputs_intact(self, state: dict[str, Any]) -> bool:
        for path, digest in (state.get("outputs") or {}).items():
            if self.hasher.path(path) != digest:
                return False
        return True

    def decide(self, stage: str, print_: str) -> tuple[str, dict[str, Any] | None]:
        """``(skip | resume | fresh, previous state)`` for a stage whose fingerprint is ``print_``."""
        state = self.load(stage)
        if state is None or state.get("fingerprint") != print_:
            return FRESH, state
        if state.get("status") == COMPLETE and self.outputs_intact(state):
            return SKIP, state
        return RESUME, state

    def start(self, stage: str, print_: str, inputs: dict[str, Any]) -> dict[str, Any]:
        state = {"stage": stage, "status": RUNNING, "fingerprint": print_, "inputs": inputs,
                 "started": time.time(), "outputs": {}}
        atomic_write_json(self.path(stage), plain_json(state))
        return state

    def finish(self, state: dict[str, Any], status: str, outputs: list[str | Path],
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
        state.update(status=status, ended=time.time(), outputs=self.hasher.many(outputs), **(extra or {}))
        atomic_write_json(self.path(state["stage"]), plain_json(state))
        self.hasher.save()
        return state

    def supersede(self, stage: str, owned: list[Path]) -> Path | None:
        """Move a stage's previous outputs aside into ``superseded/<time>-<stage>/``; return it."""
        present = [p for p in owned if p.exists()]
        state_file = self.path(stage)
        if not present and not state_file.exists():
            return None
        base = self.out / "superseded" / f"{time.strftime('%Y%m%d-%H%M%S')}-{stage}"
        target, suffix = base, 1
        while target.exists():
            suffix += 1
            target = base.with_name(f"{base.name}-{suffix}")
        for path in present:
            try:
                relative = path.resolve().relative_to(self.out.resolve())
            except ValueError:
                relative = Path(path.name)
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(path), str(destination))
        if state_file.exists():
            target.mkdir(parents=True, exist_ok=True)
            shutil.move(str(state_file), str(target / state_file.name))
        return target


def state_summary(state: dict[str, Any] | None) -> dict[str, Any]:
    """The parts of a state worth printing."""
    if state is None:
        return {}
    return {k: v for k, v in state.items() if k in ("status", "fingerprint", "started", "ended")}


__all__ = [
    "COMPLETE",
    "FAILED",
    "FRESH",
    "INCOMPLETE",
    "RESUME",
    "RUNNING",
    "SKIP",
    "ContentHasher",
    "StageStore",
    "describe",
    "fingerprint",
    "json_hash",
    "state_summary",
]
