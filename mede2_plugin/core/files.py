"""Safe file writes for every writer of the package: a lock, atomic replacement, JSON edits.

* :func:`file_lock` holds an exclusive lock for a read-modify-write of a file. It is an
  ``fcntl.flock`` (POSIX) on a sidecar ``<name>.lock`` beside the file, because the file itself
  is replaced by every write and a lock on it would not outlive one. The sidecar stays after use:
  deleting it could let two processes lock two different files. The lock is released when the
  holder exits or dies, and it is not re-entrant (do not take it twice in one process).
* :func:`atomic_writer` (and :func:`atomic_write_bytes`, :func:`atomic_write_text`,
  :func:`atomic_write_json`) writes a temp file with a unique name in the target's folder,
  fsyncs it and ``os.replace``-s it over the target: readers see the old or the new content,
  never a mix, and a crash leaves the old file. A symlink is written through (the file it points
  to is replaced, the link stays a link), an existing file keeps its permission bits, and a
  read-only file (no write bit) is refused with :class:`ReadOnlyFileError` instead of replaced.
* :func:`update_json` is the locked read-modify-write of a JSON file, written back in the file's
  own formatting style (:class:`JsonStyle`: indent, separators, ``ensure_ascii``, trailing
  newline, line endings; key order is the dictionary's, so existing keys keep their places).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

# A \u escape of a character outside ASCII: the file was written with ensure_ascii=True.
_NON_ASCII_ESCAPE = re.compile(r"\\u(?:00[89a-fA-F]|0[1-9a-fA-F][0-9a-fA-F]|[1-9a-fA-F][0-9a-fA-F]{2})[0-9a-fA-F]")


class ReadOnlyFileError(PermissionError):
    """The target of a write is read-only: it is left as it is, never replaced."""


def resolve_target(path: str | os.PathLike[str]) -> Path:
    """The file a write to ``path`` must replace: ``path`` with every symlink followed."""
    return Path(os.path.realpath(path))


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str], timeout: float | None = None) -> Iterator[Path]:
    """Hold the exclusive lock of ``path`` (a sidecar ``<name>.lock``); yields the resolved target.

    Waits for another holder, at most ``timeout`` seconds when given (then ``TimeoutError``).
    """
    target = resolve_target(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = target.with_name(target.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if deadline is None else fcntl.LOCK_NB))
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"{path}: another process has held {lock} for over {timeout} s") from None
                time.sleep(0.05)
        yield target
    finally:
        os.close(fd)  # releases the lock


def writable_mode(path: str | os.PathLike[str]) -> int | None:
    """Permission bits of the existing file behind ``path`` (None when there is none yet).

    Raises :class:`ReadOnlyFileError` for a file without any write bit or not writable by this
    process (root included: a 0444 file is read-only by intent), ``IsADirectoryError`` for a folder.
    """
    target = resolve_target(path)
    try:
        info = target.stat()
    except FileNotFoundError:
        return None
    shown = f"{path}" if Path(path) == target else f"{path} (-> {target})"
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(f"{shown} is a folder, not a file")
    mode = stat.S_IMODE(info.st_mode)
    if not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) or not os.access(target, os.W_OK):
        raise ReadOnlyFileError(f"{shown} is read-only (mode {mode:04o}); it was left unchanged. "
                                "Make it writable (chmod u+w) to let it be updated")
    return mode


def _new_file_mode() -> int:
    """0666 minus the process umask: the mode ``open()`` would give a new file."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    umask = os.umask(0o022)  # no /proc: read the umask by setting it, then restore it at once
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str], text: bool = False, encoding: str = "utf-8") -> Iterator[IO[Any]]:
    """Yield a file object whose content replaces ``path`` atomically when the block ends.

    Nothing is replaced if the block raises. ``text=True`` gives a text file (``encoding``, no
    newline translation); otherwise a binary one.
    """
    target = resolve_target(path)
    mode = writable_mode(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with (os.fdopen(fd, "w", encoding=encoding, newline="") if text else os.fdopen(fd, "wb")) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _new_file_mode() if mode is None else mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_folder(target.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically; returns the file written (symlinks followed)."""
    with atomic_writer(path) as handle:
        handle.write(data)
    return resolve_target(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Replace ``path`` with ``text`` atomically (written as given: no newline translation)."""
    with atomic_writer(path, text=True, encoding=encoding) as handle:
        handle.write(text)
    return resolve_target(path)


@dataclass(frozen=True)
class JsonStyle:
    """How a JSON file is laid out, so that rewriting it changes only what changed."""

    indent: str | None = "  "  #: indentation of one level; None writes one line
    separators: tuple[str, str] = (",", ": ")  #: item and key separators, as ``json.dumps`` takes them
    ensure_ascii: bool = False  #: escape non-ASCII characters as ``\\uXXXX``
    trailing_newline: bool = True  #: the file ends with a line break
    newline: str = "\n"  #: line break: ``"\\n"`` or ``"\\r\\n"``

    def dumps(self, data: Any) -> str:
        """``data`` as the text of a file in this style."""
        text = json.dumps(data, indent=self.indent, separators=self.separators, ensure_ascii=self.ensure_ascii)
        text += "\n" if self.trailing_newline else ""
        return text if self.newline == "\n" else text.replace("\n", self.newline)

    @classmethod
    def detect(cls, text: str, data: Any) -> JsonStyle:
        """The style of ``text``, the JSON file that parsed to ``data``.

        Indentation, ``ensure_ascii`` and line endings are read from the text; among the usual
        separators the one that reproduces the text exactly is taken (else ``json.dumps``'s own).
        """
        newline = "\r\n" if "\r\n" in text else "\n"
        body = text.replace("\r\n", "\n")
        style = cls(trailing_newline=body.endswith("\n"), newline=newline)
        body = body.strip()
        if not data or not isinstance(data, (dict, list)):
            return style  # "{}" looks the same in every style: keep the default for what comes
        ensure_ascii = body.isascii() and bool(_NON_ASCII_ESCAPE.search(body))
        indented = re.search(r"\n([ \t]+)\S", body)
        indent = indented.group(1) if indented else None
        candidates = ([(",", ": "), (",", ":")] if indent is not None
                      else [(", ", ": "), (",", ":"), (",", ": "), (", ", ":")])
        styles = [replace(style, indent=indent, separators=seps, ensure_ascii=ensure_ascii) for seps in candidates]
        for candidate in styles:
            if json.dumps(data, indent=indent, separators=candidate.separators, ensure_ascii=ensure_ascii) == body:
                return candidate
        return styles[0]


def read_json(path: str | os.PathLike[str]) -> tuple[Any, JsonStyle]:
    """Parse a JSON file and detect its style; a broken file raises ``ValueError`` naming it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None
    return data, JsonStyle.detect(text, data)


def atomic_write_json(path: str | os.PathLike[str], data: Any, style: JsonStyle | None = None) -> Path:
    """Replace ``path`` with ``data`` as JSON (``style``, default: 2-space indent, UTF-8, newline)."""
    return atomic_write_text(path, (style or JsonStyle()).dumps(data))


def update_json(path: str | os.PathLike[str], change: Callable[[Any], Any], default: Callable[[], Any] = dict,
                style: JsonStyle | None = None, timeout: float | None = None) -> Any:
    """Locked read-modify-write of the JSON file ``path``; returns what the file holds afterwards.

    ``change(data)`` receives the parsed file (``default()`` when there is none yet) and returns
    the new content, or None to leave the file untouched. It runs under :func:`file_lock`, so two
    processes updating the same file apply their changes one after the other and none is lost.
    The result is written atomically in the file's own style (``style`` for a new file). A
    read-only file is refused before ``change`` runs.
    """
    with file_lock(path, timeout=timeout) as target:
        exists = writable_mode(path) is not None
        data, found = read_json(target) if exists else (default(), style or JsonStyle())
        new = change(data)
        if new is None:
            return data
        atomic_write_text(target, found.dumps(new))
        return new
