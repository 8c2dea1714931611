"""Curation of several banks for ``mede2 run``: each bank curated on its own, then the text
questions gathered for Stage-I and the image questions for Stage-II (:data:`STEP`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mede2_plugin.core.prompts import prompt_overrides
from mede2_plugin.core.questions import read_questions, write_questions
from mede2_plugin.core.stage import (
    Projected,
    StageInputs,
    StagePlan,
    StageResult,
    Step,
    fingerprint_settings,
    role_entry,
    templates_in,
)
from mede2_plugin.curate.config import CurateConfig
from mede2_plugin.data.source import BankSource


@dataclass
class CurateRun:
    """Banks curated one by one into one folder.

    Attributes:
        banks: the curation of each bank (``output_dir`` inside ``out_dir``).
        out_dir: the folder of every bank's curation and of the gathered files.
        text_questions: where the text questions of all banks go (Stage-I input).
        image_questions: where the image questions of all banks go (Stage-II input).
    """

    banks: list[CurateConfig] = field(default_factory=list)
    out_dir: str = ""
    text_questions: str = ""
    image_questions: str = ""


def review_log(config: CurateConfig) -> Path | None:
    """[human review] The rewrite-review log the strip step applies (``RUN/review/rewrites.jsonl``)."""
    from mede2_plugin.core.review_log import LOGS, find_review_dir

    folder = find_review_dir(config.out)
    return folder / LOGS["rewrites"] if folder is not None else None


def curate_step(run: CurateRun, echo: Callable[[str], None] = print) -> StageResult:
    from mede2_plugin.curate.pipeline import run_all

    result = StageResult()
    text, images, pending = [], [], 0
    for config in run.banks:
        echo(f"  bank {config.bank.label} ({config.bank.format}): steps {', '.join(config.steps)}")
        with prompt_overrides(config.prompts):
            reports = run_all(config)
        for report in reports:
            result.calls += [c for c in report.calls if c]
            pending += report.pending
            reasons = ", ".join(f"{k} {v}" for k, v in report.dropped.items()) or "none dropped"
            echo(f"    {report.step:<10} {report.input:>4} in, {report.kept:>4} kept   ({reasons})")
        result.counts[config.bank.label] = {r.step: {"in": r.input, "kept": r.kept, "dropped": r.dropped,
                                                     "pending": r.pending} for r in reports}
        text += read_questions(config.out / "curated_text.jsonl")
        images += read_questions(config.out / "curated_image.jsonl")
        result.outputs += [config.out / "curated.jsonl", config.out / "report.json"]
    result.counts["stage1_questions"] = write_questions(run.text_questions, text)
    result.counts["stage2_questions"] = write_questions(run.image_questions, images)
    result.outputs += [Path(run.text_questions), Path(run.image_questions)]
    result.counts["pending"] = pending
    result.complete = pending == 0
    result.message = (f"{len(text)} text questions for Stage-I, {len(images)} image questions for Stage-II"
                      + (f"; {pending} pending (failed calls): rerun to retry" if pending else ""))
    return result


def curate_inputs(run: CurateRun) -> StageInputs:
    inputs = StageInputs(templates=["prompts/system.j2"])
    for config in run.banks:
        plain = fingerprint_settings(config)
        inputs.settings[config.bank.label] = plain
        inputs.templates += templates_in(plain)
        inputs.prompts.update(config.prompts)
        sources: list[BankSource] = [config.bank, *config.leakage.benchmarks]
        inputs.files += [path for source in sources for path in source.files()]
        log = review_log(config)
        inputs.files += [str(log)] if log is not None else []
    inputs.files = list(dict.fromkeys(inputs.files))
    return inputs


def curate_models(run: CurateRun) -> list[dict[str, Any]]:
    if not run.banks:
        return []
    config = run.banks[0]
    entries = []
    if config.difficulty.baseline is not None:
        b = config.difficulty.baseline
        entries.append(role_entry("baseline_solver", b.backend, n=b.samples, temperature=b.temperature,
                                  max_tokens=b.max_tokens))
    for i, s in enumerate(config.difficulty.strong):
        entries.append(role_entry(f"strong_solver[{i}]", s.backend, n=s.samples, temperature=s.temperature,
                                  max_tokens=s.max_tokens))
    c, r = config.classify, config.strip
    entries.append(role_entry("classifier", c.classifier, n=c.samples, temperature=c.temperature, max_tokens=c.max_tokens))
    entries.append(role_entry("rewriter", r.rewriter, n=1, temperature=r.temperature, max_tokens=r.max_tokens))
    return [e for e in entries if e]


def curate_plan(run: CurateRun, projected: Projected) -> StagePlan:
    """The calls of every bank's curation (:func:`~mede2_plugin.curate.plan.plan_bank`) and the
    Stage-I (text) and Stage-II (image) questions it would gather."""
    from mede2_plugin.curate.plan import plan_bank

    plan = StagePlan()
    gathered: dict[str, tuple[list, list]] = {run.text_questions: ([], []), run.image_questions: ([], [])}
    for config in run.banks:
        with prompt_overrides(config.prompts):
            calls, certain, possible = plan_bank(config)
        for call in calls:
            call.role = f"{call.role} @{config.bank.label}"
        plan.calls += calls
        for kept, slot in ((certain, 0), (possible, 1)):
            gathered[run.text_questions][slot].extend(q for q in kept if not q.images)
            gathered[run.image_questions][slot].extend(q for q in kept if q.images)
    plan.questions = gathered
    return plan


STEP = Step("curate", "curation: difficulty filter, classifier, caption stripping, leakage", curate_step,
            curate_inputs, lambda run: [Path(run.out_dir)], curate_models, curate_plan)
