"""The curation steps in order: load, leakage, difficulty, classify, strip.

Each step reads the previous step's ``kept.jsonl`` (the order is ``CurateConfig.steps``) and
writes its own folder under ``output_dir``. After the last step, ``curated.jsonl`` holds the
result, split into ``curated_text.jsonl`` (Stage-I input) and ``curated_image.jsonl`` (Stage-II
input), and ``report.json`` gathers every step's report.
"""

from __future__ import annotations

import importlib
from collections import Counter
from pathlib import Path
from typing import Any

from mede2_plugin.core.jsonl import write_jsonl
from mede2_plugin.core.questions import Question, read_questions, write_questions
from mede2_plugin.core.steps import StepReport, stored_step_reports, write_stage_summary
from mede2_plugin.curate.config import STEPS, CurateConfig


def step_dir(config: CurateConfig, step: str) -> Path:
    return config.out / step


def run_load(config: CurateConfig) -> StepReport:
    """Load the input bank; accepted questions are kept, bad rows rejected with file and line."""
    if not config.bank.path:
        raise ValueError("no input bank: set bank.path (and bank.format) or give --bank PATH --format NAME")
    folder = step_dir(config, "load")
    folder.mkdir(parents=True, exist_ok=True)
    roots = [r for r in (config.media_dir, *config.media_roots) if r]
    result = config.bank.load(media_roots=roots, allow_outside_media=config.allow_outside_media)
    write_questions(folder / "kept.jsonl", result.questions)
    write_jsonl(folder / "rejected.jsonl", [r.to_dict() for r in result.rejected])
    dropped = Counter({"rejected_row": len(result.rejected)} if result.rejected else {})
    for reason, count in result.skipped.items():
        dropped[f"skipped: {reason}"] += count
    report = StepReport(step="load", input=len(result.questions) + sum(dropped.values()),
                        kept=len(result.questions), dropped=dict(dropped),
                        outputs={"kept": str(folder / "kept.jsonl"), "rejected": str(folder / "rejected.jsonl")},
                        extra={"bank": config.bank.path, "format": config.bank.format,
                               "rejected_reasons": result.summary()["rejected_reasons"],
                               "image_questions": sum(1 for q in result.questions if q.images)})
    report.write(folder / "report.json")
    return report


def input_questions(config: CurateConfig, step: str, input_path: str | Path | None = None) -> list[Question]:
    """What ``step`` reads: ``input_path`` if given, else the previous step's ``kept.jsonl``."""
    if input_path:
        return read_questions(input_path)
    if step not in config.steps:
        raise ValueError(f"step {step!r} is not in steps {config.steps}; give its input bank with --input")
    position = config.steps.index(step)
    if position == 0:
        if config.bank.format == "bank" and config.bank.path:
            return read_questions(config.bank.path)
        raise ValueError(f"step {step!r} comes first in steps {config.steps}: give its input bank with --input "
                         f"or put 'load' first")
    previous = config.steps[position - 1]
    path = step_dir(config, previous) / "kept.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path}: not there yet; run `mede2 curate {previous}` first (or give --input BANK)")
    return read_questions(path)


#: step -> ``"module:function"`` run as ``function(questions, config, step folder)``; imported when it runs
STEP_FUNCTIONS = {
    "leakage": "mede2_plugin.curate.leakage:run_leakage_step",
    "difficulty": "mede2_plugin.curate.difficulty:run_difficulty",
    "classify": "mede2_plugin.curate.classify:run_classify",
    "strip": "mede2_plugin.curate.captions:run_strip",
}


def run_step(config: CurateConfig, step: str, input_path: str | Path | None = None) -> StepReport:
    """Run one step (resumable: replies already stored are reused, no call is repeated)."""
    if step == "load":
        report = run_load(config)
    elif step in STEP_FUNCTIONS:
        module, function = STEP_FUNCTIONS[step].split(":")
        report = getattr(importlib.import_module(module), function)(input_questions(config, step, input_path),
                                                                     config, step_dir(config, step))
    else:
        raise ValueError(f"unknown step {step!r}; known: {', '.join(STEPS)}")
    if config.steps and step == config.steps[-1] and input_path is None:
        finish(config)
    write_summary(config)
    return report


def rethreshold(config: CurateConfig, input_path: str | Path | None = None) -> StepReport:
    """Decide the difficulty filter again from the stored attempts with the current thresholds."""
    from mede2_plugin.curate.difficulty import decide_step

    questions = input_questions(config, "difficulty", input_path)
    report = decide_step(questions, config.difficulty, step_dir(config, "difficulty"))
    write_summary(config)
    return report


def run_all(config: CurateConfig) -> list[StepReport]:
    """Every step of ``config.steps`` in order."""
    return [run_step(config, step) for step in config.steps]


def finish(config: CurateConfig) -> dict[str, int]:
    """Write ``curated.jsonl`` and its text / image split from the last step's ``kept.jsonl``."""
    questions = read_questions(step_dir(config, config.steps[-1]) / "kept.jsonl")
    out = config.out
    counts = {"curated": write_questions(out / "curated.jsonl", questions),
              "curated_text": write_questions(out / "curated_text.jsonl", [q for q in questions if not q.images]),
              "curated_image": write_questions(out / "curated_image.jsonl", [q for q in questions if q.images])}
    return counts


def stored_reports(config: CurateConfig) -> list[StepReport]:
    """The reports the steps of ``config.steps`` have written so far, in step order."""
    return stored_step_reports(config.out, config.steps + [s for s in STEPS if s not in config.steps])


def write_summary(config: CurateConfig) -> dict[str, Any]:
    """``output_dir/report.json``: every step's report, plus the final counts when there."""
    extra = {}
    if (config.out / "curated.jsonl").exists():
        extra["curated"] = {name: sum(1 for line in (config.out / f"{name}.jsonl").open(encoding="utf-8")
                                      if line.strip())
                            for name in ("curated", "curated_text", "curated_image")}
    return write_stage_summary(config.out, stored_reports(config), **extra)
