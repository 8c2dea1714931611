"""Training through LLaMA-Factory's own command: ``llamafactory-cli train|export RECIPE.yaml``.

``mede2 run`` writes the effective recipe (our recipe, the user's overrides, then the paths the
pipeline owns) next to the run's outputs and starts ``llamafactory-cli`` on it. Several GPUs or
nodes are LLaMA-Factory's business: it launches ``torchrun`` itself when ``FORCE_TORCHRUN=1``
(with ``NPROC_PER_NODE``, ``NNODES``, ``NODE_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), and
DeepSpeed ZeRO-3 comes from the recipe's ``deepspeed`` file. These variables pass through from
the environment of ``mede2 run``, or are set by ``training.env`` in the pipeline YAML.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any

import yaml

from mede2_plugin.core.files import atomic_write_text


class TrainingError(RuntimeError):
    """``llamafactory-cli`` failed; the message names the log and quotes its end."""


def read_recipe(path: str | Path) -> dict[str, Any]:
    """A recipe YAML as a mapping; a clear error naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: recipe not found")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a recipe must be a mapping of LLaMA-Factory arguments")  # noqa: TRY004
    return data


def resolve_deepspeed(value: Any, recipe: Path) -> Any:
    """Make a relative ``deepspeed`` file absolute: current directory, beside the recipe, or shipped."""
    if not isinstance(value, str) or not value or Path(value).is_absolute():
        return value
    candidates = [Path.cwd() / value, recipe.parent / value, recipe.parent / Path(value).name]
    try:
        from mede2_plugin.core.resources import recipes_dir

        candidates.append(recipes_dir() / Path(value).name)
    except FileNotFoundError:
        pass
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate.resolve())
    return value


def effective_recipe(recipe: str | Path, overrides: dict[str, Any], owned: dict[str, Any]) -> dict[str, Any]:
    """Recipe, then the user's ``overrides``, then the keys the pipeline owns (``owned``).

    A ``None`` value removes the key (``deepspeed: null`` trains without DeepSpeed).
    """
    recipe = Path(recipe)
    args = read_recipe(recipe)
    args.update(overrides)
    args.update(owned)
    args = {k: v for k, v in args.items() if v is not None}
    if "deepspeed" in args:
        args["deepspeed"] = resolve_deepspeed(args["deepspeed"], recipe)
    return args


def write_recipe(path: Path, args: dict[str, Any], source: str | Path) -> Path:
    header = f"# Written by `mede2 run` from {source}; run again with: llamafactory-cli ... {path.name}\n"
    atomic_write_text(path, header + yaml.safe_dump(args, sort_keys=False, allow_unicode=True))
    return path


def launcher_command(launcher: str) -> list[str]:
    """``llamafactory-cli`` beside this Python when there, else on PATH."""
    if os.sep in launcher:
        return [launcher]
    beside = Path(sys.executable).parent / launcher
    if beside.exists():
        return [str(beside)]
    found = shutil.which(launcher)
    if found is None:
        raise TrainingError(f"{launcher} not found; install LLaMA-Factory (pip install 'mede2-plugin[llamafactory]')")
    return [found]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the training process gets SIGTERM when ``mede2 run`` dies (killed or crashed)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_llamafactory(action: str, recipe_file: Path, log_file: Path, launcher: str = "llamafactory-cli",
                     env: dict[str, str] | None = None, echo=None) -> None:
    """Run ``llamafactory-cli ACTION recipe_file``, output to ``log_file``; raise on failure.

    Args:
        action: ``train`` or ``export``.
        recipe_file: the effective recipe.
        log_file: where stdout and stderr go (appended).
        launcher: the LLaMA-Factory command.
        env: variables set over this process's environment (``FORCE_TORCHRUN``, ...).
        echo: called with each output line (progress display), or None.
    """
    command = launcher_command(launcher) + [action, str(recipe_file)]
    environment = {**os.environ, **{k: str(v) for k, v in (env or {}).items()}}
    log_file.parent.mkdir(parents=True, exist_ok=True)
    tail: deque[str] = deque(maxlen=30)
    with log_file.open("a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        preexec = _die_with_parent if sys.platform.startswith("linux") else None
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=environment,
                                   text=True, errors="replace", bufsize=1,
                                   preexec_fn=preexec)  # noqa: PLW1509 - only prctl, no locks taken
        assert process.stdout is not None
        try:
            for line in process.stdout:
                log.write(line)
                tail.append(line.rstrip("\n"))
                if echo is not None:
                    echo(line.rstrip("\n"))
            status = process.wait()
        except BaseException:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            raise
    if status != 0:
        quoted = "\n    ".join(tail)
        raise TrainingError(f"llamafactory-cli {action} {recipe_file} failed (exit {status}); log: {log_file}\n"
                            f"    {quoted}")


def last_checkpoint(output_dir: Path) -> Path | None:
    """The newest ``checkpoint-N`` folder of a training output (resume point), or None."""
    if not output_dir.is_dir():
        return None
    checkpoints = [p for p in output_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return max(checkpoints, key=lambda p: int(p.name.split("-")[-1])) if checkpoints else None
