"""Command-line plumbing shared by the step-wise stage commands (``mede2 curate``, ``mede2 distill``).

Both take ``ACTION -c SETTINGS.yaml --set key.path=value`` plus a few flags that set one setting
each, load their dataclass settings (:mod:`mede2_plugin.settings`), run one step, all steps or
``report``, print the counts table, and exit 1 while any item is pending (a failed or missing call).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported lazily: building the parser stays light
    from mede2_plugin.curate.common import StepReport


def add_stage_arguments(parser: argparse.ArgumentParser, actions: Sequence[str], epilog: str,
                        config_help: str, set_example: str) -> None:
    """Add the ``action`` choice, ``-c/--config`` and the repeatable ``--set`` override."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = epilog
    parser.add_argument("action", choices=actions, help="the step to run (see below)")
    parser.add_argument("-c", "--config", help=config_help)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help=f"override one setting, value read as YAML (repeatable), e.g. {set_example}")


def flag_overrides(args: argparse.Namespace, flags: Iterable[tuple[str, str]]) -> list[str]:
    """``args.overrides`` plus ``key.path=value`` for each ``(flag, key.path)`` whose flag was given."""
    overrides = list(args.overrides)
    for flag, key in flags:
        value = getattr(args, flag)
        if value is not None:
            # a JSON value is a YAML value: paths with ':' or '#' survive
            overrides.append(f"{key}={json.dumps(value)}")
    return overrides


def run_stage_command(stage: str, args: argparse.Namespace, load_settings: Callable[[argparse.Namespace], Any],
                      run: Callable[[Any, str], list[StepReport]],
                      describe: Callable[[list[StepReport]], None] | None = None) -> int:
    """Load the settings, run ``args.action`` and print its counts table; the command's exit code.

    Args:
        stage: the command's name, for messages (``curate``).
        args: the parsed arguments (``action`` among them).
        load_settings: the settings from the arguments (raises ``ValueError`` on bad settings).
        run: the reports of ``action`` run with those settings (``config`` is handled here).
        describe: prints anything more after the table (e.g. the dataset written).

    Returns 2 on bad settings or a failed step, 1 while items are pending, else 0.
    """
    from mede2_plugin.curate.common import format_table
    from mede2_plugin.settings import ConfigError, dump_config

    try:
        config = load_settings(args)
    except (ConfigError, ValueError) as err:
        print(f"mede2 {stage}: {err}", file=sys.stderr)
        return 2
    if args.action == "config":
        print(dump_config(config), end="")
        return 0
    try:
        reports = run(config, args.action)
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"mede2 {stage} {args.action}: {err}", file=sys.stderr)
        return 2
    print(format_table(reports))
    print(f"report: {config.out / 'report.json'}")
    if describe is not None:
        describe(reports)
    pending = sum(r.pending for r in reports)
    if pending:
        print(f"{pending} item(s) pending (a call failed or is missing): run the same command again to retry",
              file=sys.stderr)
        return 1
    return 0
