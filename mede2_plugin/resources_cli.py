"""``mede2 resources OUT``: write the shipped recipes, prompt templates and examples into a folder.

After a non-editable ``pip install`` the recipes live inside site-packages; this puts a copy where
``llamafactory-cli train recipes/stage1_lora.yaml`` (relative paths included) works as in a clone.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Callable
from pathlib import Path

from mede2_plugin.resources import resource_dir

FOLDERS = ("recipes", "templates", "examples")


def copy_resources(out: str | Path, folders: tuple[str, ...] = FOLDERS, overwrite: bool = False) -> list[Path]:
    """Copy the given resource folders under ``out``; existing files are kept unless ``overwrite``."""
    out = Path(out)
    written = []
    for name in folders:
        source = resource_dir(name)
        for path in sorted(source.rglob("*")):
            if path.is_dir() or "__pycache__" in path.parts:
                continue
            target = out / name / path.relative_to(source)
            if target.exists() and not overwrite:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            written.append(target)
    return written


def resources_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    parser.add_argument("out", help="folder to write recipes/, templates/ and examples/ into")
    parser.add_argument("--only", nargs="+", choices=FOLDERS, default=list(FOLDERS),
                        help="copy only these folders")
    parser.add_argument("--overwrite", action="store_true", help="replace files that already exist")

    def run(args: argparse.Namespace) -> int:
        written = copy_resources(args.out, tuple(args.only), args.overwrite)
        print(f"wrote {len(written)} files under {args.out}")
        return 0

    return run
