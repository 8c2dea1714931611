"""Into a stock LLaMA-Factory environment, for each release of the README's compatibility table:
our wheel (plain, then with extras) only adds packages and `pip check` passes; our templates are
live there; after `pip uninstall mede2-plugin` LLaMA-Factory works as before and holds nothing of
ours; and the registration, template, dataset and worker-exit tests pass in that environment.

Each release gets a new environment from ``pip install torch==2.14.1 torchvision==0.29.1
llamafactory==VERSION`` (a few minutes each; nothing is cached between CI runs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mede2_plugin.engines.vllm_env import PACKAGE, freeze, read_lock

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
LLAMAFACTORY_RELEASES = ["0.9.5", "0.9.4"]  # the README's Compatibility table
STOCK = ["torch==2.14.1", "torchvision==0.29.1"]
EXTRAS = "[llamafactory,deepspeed,plot]"
COMPAT_TESTS = sorted(str(p) for p in REPO_ROOT.glob("tests/test_foundation_*.py")) + \
    [str(REPO_ROOT / "tests" / "test_worker_exit.py")]
OUR_TEMPLATES = ("from llamafactory.data.template import TEMPLATES; "
                 "print(' '.join(sorted(k for k in TEMPLATES if k.startswith('mede2_'))))")


def _env() -> dict[str, str]:
    """This process's environment without what points at the main environment."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTEST_ADDOPTS")}


def _run(*command: str | Path, timeout: float = 900, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=timeout, env=_env(),
                          cwd=cwd, check=False)


def _ok(*command: str | Path, timeout: float = 900, cwd: Path | None = None) -> str:
    result = _run(*command, timeout=timeout, cwd=cwd)
    assert result.returncode == 0, f"{' '.join(map(str, command))}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def _changed(before: dict[str, str], after: dict[str, str]) -> dict[str, tuple[str, str | None]]:
    return {name: (version, after.get(name)) for name, version in before.items() if after.get(name) != version}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _ok(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", out, REPO_ROOT,
        timeout=300)
    (built,) = out.glob("mede2_plugin-*.whl")
    return built


@pytest.mark.parametrize("release", LLAMAFACTORY_RELEASES)
def test_plugin_joins_a_stock_llamafactory_environment_and_leaves_it_as_it_was(release, wheel, tmp_path):
    python = tmp_path / "env" / "bin" / "python"
    _ok(sys.executable, "-m", "venv", tmp_path / "env")
    _ok(python, "-m", "pip", "install", "--quiet", *STOCK, f"llamafactory=={release}", timeout=1800)
    stock = freeze(python)
    assert stock["llamafactory"] == release

    for extras in ("", EXTRAS):
        _ok(python, "-m", "pip", "install", "--quiet", f"{wheel}{extras}")
        installed = freeze(python)
        assert not _changed(stock, installed), f"installing mede2-plugin{extras} changed packages that were there"
        print(f"llamafactory {release}, mede2-plugin{extras} added:",
              {n: v for n, v in installed.items() if n not in stock})
        _ok(python, "-m", "pip", "check")
    assert "mede2_qwen2_vl" in _ok(python, "-c", OUR_TEMPLATES).split(), "the hook registers our templates there"

    _ok(python, "-m", "pip", "uninstall", "--yes", PACKAGE)
    assert not _changed(stock, freeze(python)), "uninstalling changed packages that were there"
    _ok(python, "-m", "pip", "check")
    assert f"version {release}" in _ok(python.with_name("llamafactory-cli"), "version", cwd=tmp_path)
    assert _ok(python, "-c", OUR_TEMPLATES).split() == [], "nothing of ours is left in LLaMA-Factory"
    assert not list((tmp_path / "env").glob("lib/python*/site-packages/mede2_plugin*")), "files left behind"

    # The repository's tests of our LLaMA-Factory hooks, run in that environment on this clone.
    pins = read_lock(REPO_ROOT / "locks" / "main.txt")
    _ok(python, "-m", "pip", "install", "--quiet", "--no-deps", "-e", REPO_ROOT)
    _ok(python, "-m", "pip", "install", "--quiet", *(f"{n}=={pins[n]}" for n in ("pytest", "pytest-timeout")))
    result = _run(python, "-m", "pytest", *COMPAT_TESTS, "-m", "not slow", "-q", "-rs", "-p", "no:cacheprovider",
                  cwd=tmp_path, timeout=1800)
    print(result.stdout[-3000:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
