"""``mede2 curate STEP``: load a question bank, check leakage, filter by difficulty, classify and
strip captions of image questions; ``all`` runs the configured steps in order."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from mede2_plugin.core.stage_cli import (
    add_flags,
    add_stage_arguments,
    flag,
    overrides_from_args,
    run_stage_command,
)

if TYPE_CHECKING:
    from mede2_plugin.core.steps import StepReport
    from mede2_plugin.curate.config import CurateConfig

ACTIONS = ("load", "leakage", "difficulty", "classify", "strip", "all", "rethreshold", "report", "config")

EPILOG = """steps:
  load         read the input bank (any loader format) into load/kept.jsonl; bad rows -> load/rejected.jsonl
  leakage      flag questions similar to evaluation benchmarks (MinHash + exact Jaccard); no model call
  difficulty   baseline solver (gpt-4o, 1 try) drops solved questions; strong solver (gemini-2.5-pro,
               k=4) must solve at least once; every attempt is stored in difficulty/attempts.jsonl
  classify     image questions: pattern recognition / knowledge recall (dropped) vs reasoning
  strip        image questions: rewrite the text so it no longer describes the image (checked)
  all          the steps of `steps` in order (default: load leakage difficulty classify strip)
  rethreshold  decide the difficulty filter again from stored attempts (no model call), e.g.
               mede2 curate rethreshold -c curate.yaml --set difficulty.min_strong_correct=2
  report       print the counts table of the steps run so far
  config       print the resolved settings as YAML

Every step is resumable: a rerun reuses the stored replies and makes no call for them.
API keys come from the environment variables the backends name (api_key_env)."""


def curate_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """Add the ``curate`` arguments to ``parser`` and return the handler."""
    from mede2_plugin.curate.config import CurateConfig

    add_stage_arguments(parser, ACTIONS, EPILOG,
                        config_help="curate settings YAML (fields of CurateConfig, or a `curate:` section)",
                        set_example="--set difficulty.strong.0.samples=8")
    add_flags(parser, CurateConfig, [flag("--bank", key="bank.path"), flag("--format", key="bank.format"),
                                     flag("-o", "--output-dir", key="output_dir"), flag("--media-dir", key="media_dir")])
    parser.add_argument("--eval-bank", action="append", default=[], metavar="PATH[:FORMAT]",
                        help="an evaluation benchmark for the leakage check (repeatable; adds to "
                             "leakage.benchmarks; FORMAT defaults to bank)")
    parser.add_argument("--input", help="read this bank instead of the previous step's kept.jsonl")
    return handle


def load_from_args(args: argparse.Namespace) -> CurateConfig:
    from mede2_plugin.curate.config import load_curate_config
    from mede2_plugin.data.source import parse_bank_spec

    config = load_curate_config(args.config, overrides_from_args(args))
    config.leakage.benchmarks.extend(parse_bank_spec(spec) for spec in args.eval_bank)
    return config


def run_action(args: argparse.Namespace, config: CurateConfig, action: str) -> list[StepReport]:
    """The reports of one ``mede2 curate`` action (``report``, ``all``, ``rethreshold`` or a step)."""
    from mede2_plugin.curate import pipeline

    if action == "report":
        return pipeline.stored_reports(config)
    if action == "all":
        return pipeline.run_all(config)
    if action == "rethreshold":
        reports = [pipeline.rethreshold(config, args.input)]
        print("difficulty decided again from stored attempts (no model call); rerun the later steps "
              "to carry the change through (their stored replies are reused)", file=sys.stderr)
        return reports
    return [pipeline.run_step(config, action, args.input)]


def handle(args: argparse.Namespace) -> int:
    return run_stage_command("curate", args, load_from_args, lambda config, action: run_action(args, config, action))
