"""``mede2 resources OUT``: the shipped recipes, prompt templates and examples as files, ready to run.

After a non-editable ``pip install`` they live inside site-packages; this writes a copy into
``OUT`` and registers the sample datasets (``examples/tiny/data``: ``mede2_stage1`` and
``mede2_stage2``) into ``OUT/data``, their files copied beside ``dataset_info.json``. Every path in
the recipes is relative to ``OUT``: ``dataset_dir: data``, ``deepspeed: recipes/ds_z3_config.json``
and the outputs under ``saves/``, so ``llamafactory-cli`` runs from ``OUT``::

    mede2 resources ./mede2 && cd mede2
    llamafactory-cli train recipes/stage1_lora.yaml

``OUT`` may be an existing LLaMA-Factory project: existing files are kept unless ``--overwrite``,
and its ``data/dataset_info.json`` keeps every entry (a different entry of the same name as a
sample dataset, e.g. your own ``mede2_stage1``, is kept and reported).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from mede2_plugin.core.resources import examples_dir, resource_dir

FOLDERS = ("recipes", "templates", "examples")
DATA = "data"  #: the recipes' dataset_dir, relative to the folder they run from


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


def register_samples(out: str | Path, overwrite: bool = False) -> tuple[list[str], list[str]]:
    """Register the sample datasets into ``out/data`` (files copied); returns (registered, kept theirs).

    An entry of the same name with another definition is the user's and is kept, unless ``overwrite``.
    """
    from mede2_plugin.core.dataset_info import (
        DATASET_INFO,
        merge_dataset_info,
        read_dataset_info,
    )

    source = examples_dir() / "tiny" / "data"
    entries = read_dataset_info(source)
    theirs = read_dataset_info(Path(out) / DATA) if (Path(out) / DATA / DATASET_INFO).exists() else {}
    kept = [] if overwrite else [name for name, entry in entries.items() if theirs.get(name, entry) != entry]
    ours = {name: entry for name, entry in entries.items() if name not in kept}
    merge_dataset_info(Path(out) / DATA, ours, source_dir=source, force=overwrite, copy_files=True)
    return sorted(ours), kept


def resources_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    parser.add_argument("out", help="folder to write recipes/, templates/, examples/ and data/ into; run "
                                    "llamafactory-cli from it (the recipes' paths are relative to it)")
    parser.add_argument("--only", nargs="+", choices=[*FOLDERS, DATA], default=[*FOLDERS, DATA],
                        help="write only these (data: register the sample datasets into OUT/data)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace files and sample dataset entries that already exist")

    def run(args: argparse.Namespace) -> int:
        from mede2_plugin.core.dataset_info import RegistrationConflict

        written = copy_resources(args.out, tuple(f for f in args.only if f in FOLDERS), args.overwrite)
        print(f"wrote {len(written)} files under {args.out}")
        if DATA in args.only:
            try:
                registered, kept = register_samples(args.out, args.overwrite)
            except (RegistrationConflict, ValueError, OSError) as err:
                print(f"error: {err}", file=sys.stderr)
                return 2
            data = Path(args.out) / DATA
            print(f"{data / 'dataset_info.json'}: sample datasets {registered or '-'} registered"
                  + (f"; kept your own {kept}" if kept else ""))
        print(f"run llamafactory-cli from {args.out}, e.g.: cd {args.out} && llamafactory-cli train "
              "recipes/stage1_lora.yaml")
        return 0

    return run
