"""Where the shipped prompt templates, recipes and examples live.

In a wheel they are package data under ``mede2_plugin/``; in a clone or an editable install they
are the top-level ``templates/``, ``recipes/`` and ``examples/`` folders beside the package.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # mede2_plugin/


def resource_dir(name: str) -> Path:
    """Return the folder ``templates``, ``recipes`` or ``examples``, installed or from a clone."""
    for candidate in (_PACKAGE_DIR / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"mede2-plugin resource folder {name!r} not found next to {_PACKAGE_DIR}")


def templates_dir() -> Path:
    return resource_dir("templates")


def recipes_dir() -> Path:
    return resource_dir("recipes")


def examples_dir() -> Path:
    return resource_dir("examples")
