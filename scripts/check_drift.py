#!/usr/bin/env python3
"""See dependency drift before it bites: the newest versions pyproject.toml allows, tested.

    python scripts/check_drift.py [--keep DIR] [PYTEST_ARGS ...]

Installs ``-e ".[llamafactory,deepspeed,dev]"`` into a scratch virtual environment with no lock
(so pip takes the newest versions the ranges allow, under pip's own configuration), runs the fast
tests there (``-m "not slow"``, or the pytest arguments given after ``--``) and prints JSON: the
packages that moved, were added or removed versus ``locks/main.txt``, and the test result. Exit
status 0 when the tests pass, 1 when they fail. Nothing outside the scratch folder changes; when
tests fail on the newest versions, cap the range in pyproject.toml or fix the code before
regenerating the lock (``python scripts/lock.py --upgrade-package NAME``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from lock import MAIN_EXTRAS, MAIN_LOCK, ROOT, diff_pins

from mede2_plugin.engines.vllm_env import freeze, read_lock


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTEST_ADDOPTS")}


def test_result(junit: Path, exit_code: int, seconds: float) -> dict:
    """Counts and failed test ids from pytest's JUnit XML."""
    result = {"exit_code": exit_code, "seconds": round(seconds, 1), "passed": 0, "failed": 0, "errors": 0,
              "skipped": 0, "failures": []}
    if not junit.exists():
        return result
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        outcome = next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed")
        result[{"failure": "failed", "error": "errors"}.get(outcome, outcome)] += 1
        if outcome in ("failure", "error"):
            result["failures"].append(name)
    return result


def check_drift(folder: Path, pytest_args: list[str]) -> dict:
    python = folder / "venv" / "bin" / "python"
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(folder / "venv")], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[{','.join(MAIN_EXTRAS)}]"],
                   check=True, env=_env(), stdout=sys.stderr)
    installed = time.monotonic()
    junit = folder / "junit.xml"
    command = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *pytest_args]
    exit_code = subprocess.run(command, cwd=ROOT, env=_env(), stdout=sys.stderr, check=False).returncode
    return {"lock": str(MAIN_LOCK.relative_to(ROOT)), "install_seconds": round(installed - start, 1),
            **diff_pins(read_lock(MAIN_LOCK), freeze(python)),
            "tests": {"command": " ".join(["python", *command[1:]]),
                      **test_result(junit, exit_code, time.monotonic() - installed)}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, default=None, help="build the scratch venv here and keep it")
    parser.add_argument("pytest_args", nargs="*", default=["-m", "not slow"],
                        help='pytest arguments after -- (default: -m "not slow")')
    args = parser.parse_args(argv)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        report = check_drift(args.keep.resolve(), args.pytest_args)
    else:
        with tempfile.TemporaryDirectory(prefix="mede2-drift-") as tmp:
            report = check_drift(Path(tmp), args.pytest_args)
    print(json.dumps(report, indent=2))
    return 0 if report["tests"]["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
