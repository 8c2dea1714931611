"""Stage-I data from its config for ``mede2 run`` (:data:`STEP`): generate, filter, build."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mede2_plugin.core.prompts import prompt_overrides
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
from mede2_plugin.distill.config import DistillConfig

PAPER_TEMPLATES = ["prompts/system.j2", "prompts/question.j2", "prompts/assistant.j2"]


def distill_step(config: DistillConfig, echo: Callable[[str], None] = print) -> StageResult:
    from mede2_plugin.distill.pipeline import run_all

    echo(f"  teachers: {', '.join(t.name for t in config.teachers)}")
    with prompt_overrides(config.prompts):
        reports = run_all(config)
    result = StageResult(outputs=[config.dataset_dir, config.out / "report.json"])
    pending = 0
    for report in reports:
        result.calls += [c for c in report.calls if c]
        pending += report.pending
        reasons = ", ".join(f"{k} {v}" for k, v in report.dropped.items()) or "none dropped"
        echo(f"    {report.step:<10} {report.input:>4} in, {report.kept:>4} kept   ({reasons})")
        result.counts[report.step] = {"in": report.input, "kept": report.kept, "dropped": report.dropped,
                                      "pending": report.pending, **{k: v for k, v in report.extra.items()
                                                                    if isinstance(v, (int, float, str))}}
    samples = int(reports[-1].extra.get("samples") or 0)
    result.counts["samples"] = samples
    result.complete = pending == 0 and samples > 0
    result.message = f"{samples} Stage-I training samples in {config.dataset_dir}"
    if pending:
        result.message += f"; {pending} pending (failed calls): rerun to retry"
    elif not samples:
        result.message = "no Stage-I training sample passed the filter: nothing to train on"
    return result


def distill_inputs(config: DistillConfig) -> StageInputs:
    plain = fingerprint_settings(config)
    return StageInputs(files=config.questions.files(), settings=plain,
                       templates=templates_in(plain) + PAPER_TEMPLATES, prompts=dict(config.prompts))


def distill_models(config: DistillConfig) -> list[dict[str, Any]]:
    entries = [role_entry(f"teacher[{t.name}]", t.backend, n=t.samples, temperature=t.temperature, top_p=t.top_p,
                          max_tokens=t.max_tokens, reasoning=t.reasoning, expand_summary=t.expand_summary)
               for t in config.teachers]
    f = config.filter
    entries.append(role_entry("trace_judge", f.judge, n=1, temperature=f.judge_temperature, max_tokens=f.judge_max_tokens))
    return [e for e in entries if e]


def distill_plan(config: DistillConfig, projected: Projected) -> StagePlan:
    """The teacher, expansion and trace-judge calls (:mod:`mede2_plugin.distill.plan`)."""
    from mede2_plugin.distill.plan import plan_distill

    with prompt_overrides(config.prompts):
        return plan_distill(config, projected)


STEP = Step("distill", "Stage-I data: teacher traces, trace filter, SFT dataset", distill_step, distill_inputs,
            lambda config: [config.out], distill_models, distill_plan)
