"""One writer at a time: an output that a process is writing is refused to a second one.

:class:`WriterLock` holds an exclusive ``flock`` on a sidecar ``<name>.writer.lock`` for as long as
a process writes an append-only output (a :class:`~mede2_plugin.core.jsonl.JsonlStore`) or a run
folder (``mede2 run``). The holder writes who it is into the sidecar (pid, command, since when),
so a second process is refused at once with one line naming it, or, when asked (``--wait`` on
every command, or ``MEDE2_WAIT=1``), waits until the holder is done and then goes on with what
the first one wrote (nothing is done twice). The kernel releases the lock when the holder exits
or dies, so a killed run never leaves a stale lock behind; the sidecar stays (harmless).

Within one process the lock is shared: opening the same output twice is not a second writer.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

WAIT_ENV = "MEDE2_WAIT"
SUFFIX = ".writer.lock"

_held: dict[Path, list[Any]] = {}  # lock file -> [fd, count], this process's locks


class OutputBusy(BlockingIOError):
    """Another process is writing the same output; the message names it."""


def wait_for_writers() -> bool:
    """Whether to wait for another writer instead of stopping (``--wait`` / ``MEDE2_WAIT=1``)."""
    return os.environ.get(WAIT_ENV, "") not in ("", "0")


def lock_path(target: str | os.PathLike[str]) -> Path:
    """The sidecar lock file of an output (its symlinks followed)."""
    real = Path(os.path.realpath(target))
    return real.with_name(real.name + SUFFIX)


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        info = {}
    if not info.get("pid"):
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since") or 0))
    return f"process {info['pid']} (`{info.get('command', '?')}`, since {since})"


class WriterLock:
    """Hold the single-writer lock of ``target`` (a file or folder) until :meth:`release`.

    Args:
        target: the output being written.
        what: how the output is named in messages (default: its path).
        wait: wait for another writer (default: :func:`wait_for_writers`).
    """

    def __init__(self, target: str | os.PathLike[str], what: str | None = None, wait: bool | None = None) -> None:
        self.path = lock_path(target)
        self.what = what or str(target)
        self.wait = wait_for_writers() if wait is None else wait
        self._released = False
        self._acquire()

    def _acquire(self) -> None:
        held = _held.get(self.path)
        if held is not None:
            held[1] += 1
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(self.path)
                if not self.wait:
                    raise OutputBusy(f"{self.what} is being written by {holder}; wait for it to finish "
                                     f"(or pass --wait to queue behind it)") from None
                print(f"mede2: waiting for {holder} to finish writing {self.what}", file=sys.stderr, flush=True)
                fcntl.flock(fd, fcntl.LOCK_EX)
            command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "python"
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": command[:300], "since": time.time()}).encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        _held[self.path] = [fd, 1]

    def release(self) -> None:
        """Let another writer in (the last release in this process unlocks)."""
        held = _held.get(self.path)
        if held is None or self._released:
            return
        self._released = True
        held[1] -= 1
        if held[1] == 0:
            del _held[self.path]
            os.close(held[0])  # releases the flock

    def __enter__(self) -> WriterLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
