"""Checks ``llamafactory-cli train`` runs once, before anything starts, with one clear line.

A recipe that names a DeepSpeed config (Stage-II's ``deepspeed: recipes/ds_z3_config.json``)
needs the ``deepspeed`` package, which neither a stock LLaMA-Factory nor our ``llamafactory`` extra
installs (``pip install "mede2-plugin[deepspeed]"``), and the config file where the path points,
relative to the folder ``llamafactory-cli`` runs in. Without them LLaMA-Factory fails late, and
under torchrun in every worker at once, with interleaved tracebacks. The import hook wraps
``llamafactory.launcher.launch`` (imported only by the launching process, never by its torchrun
workers) so that such a run stops at once with exit code 2 and a line saying what to do.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any


def train_config(argv: list[str]) -> tuple[str, dict[str, Any]] | None:
    """``(config file, settings)`` of a ``llamafactory-cli train CONFIG [key=value ...]`` command
    line, merged as LLaMA-Factory's ``read_args`` merges them; None for any other command line."""
    if len(argv) < 3 or argv[1] != "train" or not argv[2].endswith((".yaml", ".yml", ".json")):
        return None
    from omegaconf import OmegaConf

    path = Path(argv[2])
    if not path.is_file():
        return None  # LLaMA-Factory names the missing file itself
    loaded = OmegaConf.create(json.loads(path.read_text())) if path.suffix == ".json" else OmegaConf.load(path)
    merged = OmegaConf.merge(loaded, OmegaConf.from_cli(argv[3:]))
    return argv[2], OmegaConf.to_container(merged)


def deepspeed_problem(recipe: str, config: dict[str, Any]) -> str | None:
    """What stops a run of ``recipe`` with ``config`` from using its DeepSpeed setting, or None."""
    value = config.get("deepspeed")
    if not value:
        return None
    if importlib.util.find_spec("deepspeed") is None:
        return (f"{recipe} trains with DeepSpeed (deepspeed: {value}), which is not installed here: "
                "pip install \"mede2-plugin[deepspeed]\" (or deepspeed), or drop the deepspeed setting")
    if isinstance(value, str) and not value.lstrip().startswith("{") and not Path(value).is_file():
        return (f"{recipe}: the DeepSpeed config {value} does not exist from {os.getcwd()}; run "
                "llamafactory-cli from the folder holding recipes/ (the one `mede2 resources` wrote), "
                "or pass deepspeed=PATH")
    return None


def guard_launch(launcher: ModuleType) -> None:
    """Wrap ``launcher.launch`` so that a train run with an unusable DeepSpeed setting stops first."""
    # LLaMA-Factory internal: llamafactory.launcher.launch, what `llamafactory-cli` runs (see INTERNALS
    # in llamafactory_ext/__init__.py)
    original = launcher.launch
    if getattr(original, "__mede2_preflight__", False):
        return

    @functools.wraps(original)
    def launch(*args: Any, **kwargs: Any) -> Any:
        found = train_config(sys.argv)
        problem = deepspeed_problem(*found) if found else None
        if problem:
            print(f"[mede2] error: {problem}", file=sys.stderr, flush=True)
            raise SystemExit(2)
        return original(*args, **kwargs)

    launch.__mede2_preflight__ = True  # type: ignore[attr-defined]
    launcher.launch = launch
