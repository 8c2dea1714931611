"""The clean exit of torchrun workers (``mede2_plugin.llamafactory_ext.worker_exit``).

A worker whose ``run_exp`` returned must leave with code 0 after the orderly part of an exit
(non-daemon threads joined, ``atexit`` callbacks run, buffered output flushed) and without the
module teardown in which the C++ abort happens; a failing run, a process outside torchrun and
``MEDE2_CLEAN_EXIT=0`` keep Python's normal exit. The ZeRO-3 tests run the real thing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mede2_plugin.llamafactory_ext.worker_exit import enabled, in_torchrun_worker

TORCHRUN_ENV = {"TORCHELASTIC_RUN_ID": "none", "LOCAL_RANK": "1"}

# A stand-in for llamafactory.train.tuner whose run_exp leaves work for the exit path: a
# non-daemon thread still writing, an atexit callback, 200 kB of buffered stdout without a
# newline, and an object whose __del__ only runs if modules are torn down.
SCRIPT = textwrap.dedent("""
    import atexit, sys, threading, time, types
    from pathlib import Path
    from mede2_plugin.llamafactory_ext.worker_exit import guard_run_exp

    out = Path(sys.argv[1])
    fail = sys.argv[2] == "fail"

    class Teardown:
        def __del__(self):
            (out / "teardown").write_text("module teardown ran")

    keep = Teardown()

    def slow_writer():
        time.sleep(0.3)
        (out / "thread").write_text("joined")

    def run_exp():
        threading.Thread(target=slow_writer).start()
        atexit.register(lambda: (out / "atexit").write_text("ran"))
        sys.stdout.write("x" * 200_000)
        if fail:
            raise RuntimeError("training failed")

    tuner = types.ModuleType("tuner")
    tuner.run_exp = run_exp
    guard_run_exp(tuner)
    guard_run_exp(tuner)  # idempotent: wrapped once
    tuner.run_exp()
    (out / "after").write_text("run_exp returned to the caller")
""")


def _run(tmp_path: Path, mode: str, extra_env: dict[str, str],
         script_path: str = "llamafactory/launcher.py") -> subprocess.CompletedProcess:
    """Run SCRIPT as ``__main__`` from ``script_path`` (by default where torchrun finds
    LLaMA-Factory's launcher); markers go to ``tmp_path/out``."""
    script = tmp_path / "scripts" / script_path
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(SCRIPT)
    out = tmp_path / "out"
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("TORCHELASTIC_RUN_ID", "LOCAL_RANK", "MEDE2_CLEAN_EXIT")}
    return subprocess.run([sys.executable, str(script), str(out), mode], env={**env, **extra_env},
                          capture_output=True, text=True, timeout=60, check=False)


def _written(tmp_path: Path) -> set[str]:
    return {p.name for p in (tmp_path / "out").iterdir()}


def test_successful_worker_exits_zero_after_orderly_shutdown_without_module_teardown(tmp_path: Path):
    result = _run(tmp_path, "ok", TORCHRUN_ENV)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "x" * 200_000  # buffered output was flushed before os._exit
    assert "[mede2] rank 1: run finished; exiting without interpreter teardown" in result.stderr
    assert _written(tmp_path) == {"thread", "atexit"}  # no "after": it exits inside run_exp; no "teardown"


def test_failed_run_keeps_its_traceback_exit_code_and_normal_exit(tmp_path: Path):
    result = _run(tmp_path, "fail", TORCHRUN_ENV)
    assert result.returncode == 1
    assert "RuntimeError: training failed" in result.stderr
    assert _written(tmp_path) == {"thread", "atexit", "teardown"}


@pytest.mark.parametrize("env", [{}, {**TORCHRUN_ENV, "MEDE2_CLEAN_EXIT": "0"}],
                         ids=["outside-torchrun", "switched-off"])
def test_normal_exit_outside_torchrun_or_when_switched_off(tmp_path: Path, env: dict[str, str]):
    result = _run(tmp_path, "ok", env)
    assert result.returncode == 0, result.stderr
    assert _written(tmp_path) == {"thread", "atexit", "after", "teardown"}


def test_a_users_own_script_under_torchrun_goes_on_after_run_exp(tmp_path: Path):
    result = _run(tmp_path, "ok", TORCHRUN_ENV, script_path="my_project/train_then_eval.py")
    assert result.returncode == 0, result.stderr
    assert _written(tmp_path) == {"thread", "atexit", "after", "teardown"}


def test_detection_of_llamafactory_cli_torchrun_workers():
    launcher = "/venv/lib/python3.11/site-packages/llamafactory/launcher.py"
    assert in_torchrun_worker(TORCHRUN_ENV) and enabled(TORCHRUN_ENV, launcher)
    assert not in_torchrun_worker({"LOCAL_RANK": "0"})  # set by other launchers too; not enough alone
    assert not enabled({**TORCHRUN_ENV, "MEDE2_CLEAN_EXIT": "0"}, launcher)
    assert not enabled(TORCHRUN_ENV, "/home/me/project/launcher.py")
    assert not enabled(TORCHRUN_ENV, "")  # python -c, notebooks


def test_import_hook_wraps_llamafactory_run_exp_in_a_fresh_process():
    pytest.importorskip("llamafactory", reason="needs the llamafactory extra")
    code = ("import llamafactory.train.tuner as t; "
            "print(getattr(t.run_exp, '__mede2_clean_exit__', False), t.run_exp.__module__)")
    env = {k: v for k, v in os.environ.items() if k != "MEDE2_NO_AUTOLOAD"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["True", "llamafactory.train.tuner"]
