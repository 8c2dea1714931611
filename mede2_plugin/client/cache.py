"""Persistent response cache: a rerun never pays twice for the same call.

The key is a sha256 over everything that decides the answer: backend, server address, model,
the messages (each image replaced by the hash of its bytes, so a path and a data URL of the same
picture are one key and no image is stored twice), the sampling settings, the JSON schema and the
backend options that change outputs. For in-process models (``local``, ``vllm``) it also holds a
fingerprint of the model folder (and of a LoRA adapter folder): every file's name, size and
modification time, so retraining into the same folder never serves the old model's answers.
Only successful responses are stored. The store is one
SQLite file (WAL mode, one commit per response), safe against a killed process and shared by
every output file and process that points at the same folder.

Claims: checking the cache only before sending would let two runs sharing a cache pay for the
same request twice. So a key is *claimed* (table ``claims``: owner, host, pid, lease end) before
its call is made, in the same transaction that finds it missing; another run finding the claim
waits for the answer (:class:`~mede2_plugin.client.claims.ClaimedWork`) instead of paying again.
The owner renews its claims while its calls are in flight; the answer replaces the claim in one
transaction, and a failed call gives the claim up. A claim whose lease ran out, or whose owner
process on this host is gone (killed), is taken over by the next run that wants the key.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mede2_plugin.client.backends.base import Completion, Sample
from mede2_plugin.client.config import BackendConfig, ChatRequest
from mede2_plugin.core.media import content_hash, map_image_urls, training_resize_args

CACHE_FILE = "responses.sqlite3"
KEY_VERSION = 1
HOST = socket.gethostname()
HIT, CLAIMED, BUSY = "hit", "claimed", "busy"  # outcomes of ResponseCache.claim


def cache_key(config: BackendConfig, request: ChatRequest) -> str:
    """The cache key of ``request`` sent through ``config`` (the request id is not part of it)."""
    material = {
        "v": KEY_VERSION,
        "backend": config.backend,
        "base_url": (config.base_url or "").rstrip("/"),
        "model": config.model,
        "messages": map_image_urls(request.messages, content_hash),
        "n": request.n,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_tokens": request.max_tokens,
        "seed": request.seed,
        "stop": request.stop,
        "response_schema": request.response_schema,
        "extra": request.extra,
        "thinking_budget": config.thinking_budget,
        "reasoning_effort": config.reasoning_effort,
        "extra_body": config.extra_body,
    }
    resize = training_resize_args(config.engine_args)
    if config.backend == "openai" and resize:  # images are resized before sending: part of the request
        material["image_resize"] = resize
    if config.backend in ("local", "vllm"):
        material["engine_args"] = config.engine_args
        material["weights"] = [folder_fingerprint(os.path.abspath(f)) for f in _weight_folders(config)]
    text = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _weight_folders(config: BackendConfig) -> list[str]:
    """The model folder and any LoRA adapters (a comma-separated string, as LLaMA-Factory takes
    them, or a list from YAML)."""
    adapters = config.engine_args.get("adapter_name_or_path") or []
    if isinstance(adapters, str):
        adapters = adapters.split(",")
    return [config.model, *(str(a).strip() for a in adapters if str(a).strip())]


def folder_fingerprint(path: str) -> str | None:
    """sha256 over the name, size and mtime (ns) of the files directly in ``path`` (weights,
    config, tokenizer: what a loader reads; ``checkpoint-*`` subfolders are not); None when
    ``path`` is not a folder (a hub id). About 20 ``stat`` calls, so cheap enough per request."""
    if not os.path.isdir(path):
        return None
    with os.scandir(path) as entries:
        files = [(e.name, e.stat()) for e in entries if e.is_file()]
    stats = sorted((name, st.st_size, st.st_mtime_ns) for name, st in files)
    return hashlib.sha256(json.dumps(stats).encode("utf-8")).hexdigest()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def new_owner() -> str:
    """A claim owner: one per run (two runs in one process are two owners)."""
    return f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class ResponseCache:
    """Key -> :class:`Completion`, stored in ``<directory>/responses.sqlite3``, with key claims."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / CACHE_FILE
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, model TEXT, "
                         "created REAL, completion TEXT)")
        self._db.execute("CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, owner TEXT, host TEXT, "
                         "pid INTEGER, expires REAL)")

    @staticmethod
    def _completion(text: str) -> Completion:
        data = json.loads(text)
        return Completion(samples=[Sample(**s) for s in data["samples"]], prompt_tokens=data["prompt_tokens"],
                          completion_tokens=data["completion_tokens"], warning=data.get("warning"))

    def get(self, key: str) -> Completion | None:
        with self._lock:
            row = self._db.execute("SELECT completion FROM responses WHERE key = ?", (key,)).fetchone()
        return None if row is None else self._completion(row[0])

    def put(self, key: str, completion: Completion, model: str = "") -> None:
        """Store the answer of ``key``; any claim on it ends in the same transaction."""
        data: dict[str, Any] = {"samples": [s.to_dict() for s in completion.samples],
                                "prompt_tokens": completion.prompt_tokens,
                                "completion_tokens": completion.completion_tokens}
        if completion.warning:
            data["warning"] = completion.warning
        with self._lock, self._transaction():
            self._db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)",
                             (key, model, time.time(), json.dumps(data, ensure_ascii=False)))
            self._db.execute("DELETE FROM claims WHERE key = ?", (key,))

    # -- claims ---------------------------------------------------------------------------
    def claim(self, key: str, owner: str, lease_s: float) -> tuple[str, Completion | None]:
        """``(HIT, answer)`` when ``key`` is answered; else ``(CLAIMED, None)`` when ``owner`` now
        holds it (nobody did, or the holder's lease ran out or its process here is gone), or
        ``(BUSY, None)`` while another live claim (or ``owner``'s own earlier one) holds it."""
        now = time.time()
        with self._lock, self._transaction():
            row = self._db.execute("SELECT completion FROM responses WHERE key = ?", (key,)).fetchone()
            if row is not None:
                return HIT, self._completion(row[0])
            holder = self._db.execute("SELECT owner, host, pid, expires FROM claims WHERE key = ?",
                                      (key,)).fetchone()
            if holder is not None:
                holder_owner, host, pid, expires = holder
                gone = host == HOST and not _pid_alive(pid)
                if holder_owner == owner or (expires > now and not gone):
                    return BUSY, None
            self._db.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?)",
                             (key, owner, HOST, os.getpid(), now + lease_s))
        return CLAIMED, None

    def renew(self, owner: str, lease_s: float) -> None:
        """Extend every claim of ``owner`` by ``lease_s`` from now."""
        with self._lock:
            self._db.execute("UPDATE claims SET expires = ? WHERE owner = ?", (time.time() + lease_s, owner))

    def release(self, owner: str, key: str | None = None) -> None:
        """Give up ``owner``'s claim on ``key`` (every claim of ``owner`` when ``key`` is None)."""
        with self._lock:
            if key is None:
                self._db.execute("DELETE FROM claims WHERE owner = ?", (owner,))
            else:
                self._db.execute("DELETE FROM claims WHERE key = ? AND owner = ?", (key, owner))

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on error): the check and the write of a
        claim happen under SQLite's write lock, so two processes never both claim one key."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
