"""A clean exit for ``llamafactory-cli train`` workers under torchrun.

The problem: after a run has trained and saved, a torchrun worker can still die at interpreter
exit with ``terminate called without an active exception`` (SIGABRT), which fails the whole
``llamafactory-cli train`` call (exit 1) although every output is on disk. It is a race in
Python's finalization, not in training: on CPython <= 3.13 a native thread that asks for the GIL
while the interpreter is being torn down is ended with ``pthread_exit``; when that thread is a
C++ one (a Gloo/c10d worker or the autograd engine, releasing a tensor that still references a
Python object) the forced unwind crosses a ``noexcept`` frame and the C++ runtime aborts
(pytorch/pytorch#117762, #190489). We saw it on DeepSpeed ZeRO-3 with two CPU ranks about once
in ten CI runs, always after "Model weights saved".

The fix: once ``run_exp`` has returned normally in a torchrun worker of ``llamafactory-cli train``
(``__main__`` is LLaMA-Factory's ``launcher.py``, whose last act is that call), do what an orderly exit
does while the interpreter is still whole (join non-daemon threads, run ``atexit`` callbacks,
which also shut ``logging`` down and finish trackers such as wandb, flush the standard streams)
and then leave with ``os._exit(0)``, skipping the module teardown in which the race happens.
A run that raises is left alone: its traceback and non-zero exit code are LLaMA-Factory's; so is
a user's own script that calls ``run_exp`` under torchrun (its code after the call still runs).
``MEDE2_CLEAN_EXIT=0`` turns this off.
"""

from __future__ import annotations

import atexit
import functools
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

ENV_SWITCH = "MEDE2_CLEAN_EXIT"


def in_torchrun_worker(environ: dict[str, str] | None = None) -> bool:
    """True in a process started by torchrun (it sets ``TORCHELASTIC_RUN_ID`` and ``LOCAL_RANK``)."""
    env = os.environ if environ is None else environ
    return "TORCHELASTIC_RUN_ID" in env and "LOCAL_RANK" in env


def started_by_llamafactory_cli(main_file: str | None = None) -> bool:
    """True when ``__main__`` is LLaMA-Factory's ``launcher.py``: what torchrun runs for
    ``llamafactory-cli train``. A user's own script that calls ``run_exp`` and goes on is not."""
    if main_file is None:
        main_file = getattr(sys.modules.get("__main__"), "__file__", None) or ""
    path = Path(main_file)
    return path.name == "launcher.py" and path.parent.name == "llamafactory"


def enabled(environ: dict[str, str] | None = None, main_file: str | None = None) -> bool:
    """Whether a finished ``run_exp`` should exit through :func:`exit_without_finalization`."""
    env = os.environ if environ is None else environ
    return (env.get(ENV_SWITCH, "1") != "0" and in_torchrun_worker(env)
            and started_by_llamafactory_cli(main_file))


def exit_without_finalization(code: int = 0) -> None:
    """Finish like a normal interpreter exit up to module teardown, then ``os._exit(code)``."""
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon and thread.is_alive():
            thread.join()
    atexit._run_exitfuncs()  # the same callbacks Py_Finalize would run first
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing left to save
            pass
    os._exit(code)


def guard_run_exp(tuner: ModuleType) -> None:
    """Wrap ``tuner.run_exp`` so that a successful run in a torchrun worker exits cleanly."""
    # LLaMA-Factory internal: llamafactory.train.tuner.run_exp, run by llamafactory/launcher.py as a
    # torchrun worker's __main__ (see INTERNALS in llamafactory_ext/__init__.py)
    original: Callable[..., Any] = tuner.run_exp
    if getattr(original, "__mede2_clean_exit__", False):
        return

    @functools.wraps(original)
    def run_exp(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if enabled():
            rank = os.environ.get("RANK", os.environ.get("LOCAL_RANK", "?"))
            print(f"[mede2] rank {rank}: run finished; exiting without interpreter teardown "
                  f"({ENV_SWITCH}=0 turns this off)", file=sys.stderr, flush=True)
            exit_without_finalization(0)
        return result

    run_exp.__mede2_clean_exit__ = True  # type: ignore[attr-defined]
    tuner.run_exp = run_exp
