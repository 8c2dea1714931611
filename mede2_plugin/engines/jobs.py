"""Running a model job: GPU engines in a child process, local models seeded.

An in-process vLLM engine keeps its GPU memory until the process ends, and the next training stage
(``llamafactory-cli`` in its own process) would then find the GPUs full. Jobs whose model backend
is ``vllm`` therefore run in a fresh ``spawn`` process that exits when the job is done; the child
dies with its parent (Linux ``PR_SET_PDEATHSIG``). Other backends run in-process, the ``local`` one
seeded first (:func:`seed_everything`) so a rerun samples what a clean run would.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any

ISOLATED_BACKENDS = ("vllm",)


def seed_everything(seed: int, threads: int | None = None) -> None:
    """Seed Python, NumPy and torch before a local model samples (same draws on a rerun)."""
    from transformers import set_seed

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    set_seed(seed)


def _child(conn: Any, job: Callable[..., Any], args: tuple[Any, ...]) -> None:  # pragma: no cover - child
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
        except (OSError, AttributeError):
            pass
    try:
        conn.send(("ok", job(*args)))
    except BaseException as err:  # noqa: BLE001 - handed to the parent
        conn.send(("error", f"{type(err).__name__}: {err}\n{traceback.format_exc()}"))
    finally:
        conn.close()


def run_isolated(job: Callable[..., Any], *args: Any) -> Any:
    """``job(*args)`` in a spawned, non-daemonic child process (it may start its own workers)."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(child, job, args), name=f"mede2-{job.__name__}")
    process.start()
    child.close()
    try:
        status, value = parent.recv()
    except EOFError:
        process.join()
        raise RuntimeError(f"{job.__name__} died in its child process (exit {process.exitcode})") from None
    process.join()
    if status == "error":
        raise RuntimeError(f"{job.__name__} failed in its child process: {value}")
    return value


def maybe_isolated(backend: Any, job: Callable[..., Any], *args: Any) -> Any:
    """``job(*args)`` in a child process for GPU engines (``vllm``), in this process otherwise."""
    if getattr(backend, "backend", None) in ISOLATED_BACKENDS:
        return run_isolated(job, *args)
    return job(*args)
