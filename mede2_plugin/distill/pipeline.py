"""The distillation steps in order: generate (teachers), filter (rules + judge), build (dataset)."""

from __future__ import annotations

import importlib
from typing import Any

from mede2_plugin.core.questions import Question
from mede2_plugin.core.steps import StepReport, stored_step_reports, write_stage_summary
from mede2_plugin.distill.config import STEPS, DistillConfig


def load_questions(config: DistillConfig) -> list[Question]:
    """The question bank of ``config.questions``; any rejected row is an error naming file and line."""
    from mede2_plugin.data import load_bank

    source = config.questions
    if not source.path:
        raise ValueError("no question bank: set questions.path or give --questions PATH")
    roots = [r for r in (config.media_dir, *config.media_roots) if r]
    return load_bank(source.path, source.format, strict=True, media_roots=roots,
                     allow_outside_media=config.allow_outside_media, **source.options).questions


#: step -> ``"module:function"`` run as ``function(questions, config)``; imported when it runs
STEP_FUNCTIONS = {
    "generate": "mede2_plugin.distill.generate:run_generate",
    "filter": "mede2_plugin.distill.filter:run_filter",
    "build": "mede2_plugin.distill.build:run_build",
}


def run_step(config: DistillConfig, step: str, questions: list[Question] | None = None) -> StepReport:
    """Run one step (resumable: stored replies are reused, no call is repeated)."""
    if step not in STEP_FUNCTIONS:
        raise ValueError(f"unknown step {step!r}; known: {', '.join(STEPS)}")
    questions = load_questions(config) if questions is None else questions
    module, function = STEP_FUNCTIONS[step].split(":")
    report = getattr(importlib.import_module(module), function)(questions, config)
    write_summary(config)
    return report


def run_all(config: DistillConfig) -> list[StepReport]:
    questions = load_questions(config)
    return [run_step(config, step, questions) for step in STEPS]


def stored_reports(config: DistillConfig) -> list[StepReport]:
    """The reports the steps have written so far, in step order."""
    return stored_step_reports(config.out, STEPS)


def write_summary(config: DistillConfig) -> dict[str, Any]:
    """``output_dir/report.json``: every step's report and the counts table."""
    return write_stage_summary(config.out, stored_reports(config))
