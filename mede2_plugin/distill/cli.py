"""``mede2 distill STEP``: Stage-I data from teacher traces (generate, filter, build, or all)."""

from __future__ import annotations

import argparse
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
    from mede2_plugin.distill.config import DistillConfig

ACTIONS = ("generate", "filter", "build", "all", "report", "config")

EPILOG = """steps:
  generate  every teacher answers every question `samples` times (default teachers: deepseek-r1 and
            qwq-32b on OpenAI-compatible servers, o1 on OpenAI with its summary expanded into a full
            reasoning process); traces -> generate/traces.jsonl
  filter    rule checks (right answer by the shared extractor, \\boxed{}, not truncated, think then
            answer, length bounds), then a judge rates coherence; every trace kept with its reason
  build     choose the trace(s) per question and write the Stage-I dataset (mede2_sft records and/or
            Appendix-A messages) with its dataset_info.json entry (default name mede2_stage1)
  all       generate, filter, build
  report    print the counts table of the steps run so far
  config    print the resolved settings as YAML

Every step is resumable: a rerun reuses the stored replies and makes no call for them.
Train with: llamafactory-cli train recipes/stage1_lora.yaml dataset_dir=<dataset dir>"""


def distill_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """Add the ``distill`` arguments to ``parser`` and return the handler."""
    add_stage_arguments(parser, ACTIONS, EPILOG,
                        config_help="distill settings YAML (fields of DistillConfig, or a `distill:` section)",
                        set_example="--set teachers.0.samples=4 --set filter.judge=null")
    from mede2_plugin.distill.config import BUILD_FORMATS, DistillConfig

    add_flags(parser, DistillConfig, [
        flag("--questions", key="questions.path"), flag("--format", key="questions.format"),
        flag("-o", "--output-dir", key="output_dir"), flag("--dataset-dir", key="build.dataset_dir"),
        flag("--formats", key="build.formats", choices=BUILD_FORMATS)])
    return handle


def load_from_args(args: argparse.Namespace) -> DistillConfig:
    from mede2_plugin.distill.config import load_distill_config

    return load_distill_config(args.config, overrides_from_args(args))


def run_action(config: DistillConfig, action: str) -> list[StepReport]:
    """The reports of one ``mede2 distill`` action (``report``, ``all`` or a step)."""
    from mede2_plugin.distill import pipeline

    if action == "report":
        return pipeline.stored_reports(config)
    if action == "all":
        return pipeline.run_all(config)
    return [pipeline.run_step(config, action)]


def print_dataset(reports: list[StepReport]) -> None:
    """One line on the dataset the build step wrote, when it ran."""
    build = next((r for r in reports if r.step == "build"), None)
    if build is not None:
        print(f"dataset: {build.extra.get('samples', 0)} samples, entries {build.extra.get('dataset_entries')} "
              f"in {build.extra.get('dataset_dir')}/dataset_info.json")


def handle(args: argparse.Namespace) -> int:
    return run_stage_command("distill", args, load_from_args, run_action, describe=print_dataset)
