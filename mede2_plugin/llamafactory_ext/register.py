"""``mede2 register``: merge MedE2 dataset entries into another project's ``dataset_info.json``.

The merge itself (locked, atomic, links and modes kept, files copied or linked) is
:func:`mede2_plugin.core.dataset_info.merge_dataset_info`, shared with every stage that writes a
dataset.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from mede2_plugin.core.dataset_info import (
    DATASET_INFO,
    RegistrationConflict,
    inside_installed_package,
    merge_dataset_info,
    read_dataset_info,
)


def register_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    parser.add_argument("--dataset-dir", required=True,
                        help="the project's LLaMA-Factory dataset folder (its dataset_info.json is updated)")
    parser.add_argument("--from", dest="source", default=None,
                        help="folder (or dataset_info.json) whose entries to merge; default: the "
                             "bundled tiny sample datasets (examples/tiny/data)")
    parser.add_argument("--only", nargs="+", default=None, help="merge only these entry names")
    parser.add_argument("--force", action="store_true",
                        help="replace entries (and copied files) of the same name that differ (default: refuse)")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--copy", action="store_true", dest="copy",
                     help="copy the data files and the media they name into --dataset-dir "
                          "(the default, and the only choice, when the source is inside site-packages)")
    how.add_argument("--link", action="store_true",
                     help="leave the files where they are and point the entries at them by relative path "
                          "(the default for a source outside site-packages, e.g. a clone)")

    def run(args: argparse.Namespace) -> int:
        from mede2_plugin.core.resources import examples_dir

        source = Path(args.source) if args.source else examples_dir() / "tiny" / "data"
        source_dir = source.parent if source.name == DATASET_INFO else source
        if args.link and inside_installed_package(source_dir):
            parser.error(f"{source_dir} is inside an installed package (site-packages); a link to it breaks "
                         "on upgrade or uninstall: leave out --link to copy the files")
        try:
            entries = read_dataset_info(source_dir)
            if not entries:
                parser.error(f"no dataset entries found in {source_dir / DATASET_INFO}")
            if args.only:
                missing = sorted(set(args.only) - set(entries))
                if missing:
                    parser.error(f"{source_dir / DATASET_INFO} has no entries {missing}")
                entries = {k: v for k, v in entries.items() if k in args.only}
            report = merge_dataset_info(args.dataset_dir, entries, source_dir=source_dir, force=args.force,
                                        copy_files=args.copy)
        except RegistrationConflict as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        except (ValueError, OSError) as err:  # malformed JSON, read-only target, ...
            print(f"error: {err}", file=sys.stderr)
            return 2
        copied = f", copied {len(report.copied)} files" if report.copied else ""
        print(f"{report.target}: added {report.added or '-'}, unchanged {report.unchanged or '-'}, "
              f"replaced {report.replaced or '-'}{copied}")
        return 0

    return run
