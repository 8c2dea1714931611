"""The distillation steps in order: generate (teachers), filter (rules + judge), build (dataset)."""

from __future__ import annotations

from typing import Any

from mede2_plugin.curate.common import (
    StepReport,
    stored_step_reports,
    write_stage_summary,
)
from mede2_plugin.distill.config import STEPS, DistillConfig
from mede2_plugin.questions import Question


def load_questions(config: DistillConfig) -> list[Question]:
    """The question bank of ``config.questions``; any rejected row is an error naming file and line."""
    from mede2_plugin.data import load_bank

    source = config.questions
    if not source.path:
        raise ValueError("no question bank: set questions.path or give --questions PATH")
    return load_bank(source.path, source.format, strict=True, **source.options).questions


def run_step(config: DistillConfig, step: str, questions: list[Question] | None = None) -> StepReport:
    """Run one step (resumable: stored replies are reused, no call is repeated)."""
    questions = load_questions(config) if questions is None else questions
    if step == "generate":
        from mede2_plugin.distill.generate import run_generate

        report = run_generate(questions, config)
    elif step == "filter":
        from mede2_plugin.distill.filter import run_filter

        report = run_filter(questions, config)
    elif step == "build":
        from mede2_plugin.distill.build import run_build

        report = run_build(questions, config)
    else:
        raise ValueError(f"unknown step {step!r}; known: {', '.join(STEPS)}")
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
