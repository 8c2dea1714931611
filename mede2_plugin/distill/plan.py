"""The calls Stage-I data would make, for ``mede2 run --plan`` (nothing is sent).

Teachers answer every usable question that curation keeps (certain, or possible while curation
has not decided). Summary expansions and trace-judge ratings are exact once the teachers'
answers are there (the stage's own rules decide them); before that, each is a possible request
whose text to come (the teacher's answer) is estimated from the teacher's ``max_tokens`` or its
mean answer so far.
"""

from __future__ import annotations

from typing import Any

from mede2_plugin.client.estimate import expected_output
from mede2_plugin.core.jsonl import latest_records
from mede2_plugin.core.questions import Question
from mede2_plugin.core.stage import (
    PlannedCalls,
    Projected,
    StagePlan,
    planned_questions,
)
from mede2_plugin.core.steps import slug
from mede2_plugin.distill.config import DistillConfig
from mede2_plugin.distill.filter import judge_request, rule_failures
from mede2_plugin.distill.generate import (
    expansion_request,
    needs_expansion,
    select_questions,
    teacher_request,
    teacher_traces,
    trace_id,
)
from mede2_plugin.distill.traces import parse_reply


def plan_distill(config: DistillConfig, projected: Projected) -> StagePlan:
    """Teacher, expansion and trace-judge calls (see the module docstring)."""
    certain, possible = planned_questions(config.questions.path, projected)
    sure = {q.id for q in select_questions(certain, config)[0]}
    usable = select_questions(certain + possible, config)[0]
    folder = config.out / "generate"
    cfg = config.filter
    judge = PlannedCalls("trace_judge", cfg.judge, folder.parent / "filter" / f"judge-{slug(cfg.judge.model)}.results.jsonl",
                         basis="one per trace passing the rule checks (exact once the teachers have answered)") \
        if cfg.judge is not None else None
    plan = StagePlan()
    for teacher in config.teachers:
        path = folder / f"{slug(teacher.name)}.results.jsonl"
        rows, expanded = latest_records(path), latest_records(path.with_name(f"{slug(teacher.name)}.expand.results.jsonl"))
        asked = PlannedCalls(f"teacher[{teacher.name}]", teacher.backend, path,
                             basis="one per text question curation keeps (exact once curation is done)")
        expand = PlannedCalls(f"teacher[{teacher.name}]:expand", teacher.backend,
                              path.with_name(f"{slug(teacher.name)}.expand.results.jsonl"),
                              basis="one per summary-only answer that is right and complete (exact once answered)")
        for question in usable:
            request = teacher_request(question, teacher, config)
            (asked.certain if question.id in sure else asked.possible).append(request)
            answer, answer_basis = expected_output(path, request)
            row = rows.get(question.id)
            _expansions(question, teacher, config, row, expand, answer, answer_basis)
            if judge is not None:
                _judged(question, teacher, row, expanded, judge, answer, answer_basis, cfg)
        plan.calls += [asked] + ([expand] if teacher.expand_summary else [])
    plan.calls += [judge] if judge is not None else []
    return plan


def _expansions(question: Question, teacher: Any, config: DistillConfig, row: dict | None, expand: PlannedCalls,
                answer: int, basis: str) -> None:
    if not teacher.expand_summary:
        return
    samples = (row or {}).get("samples") if row and row.get("error") is None else None
    if samples is None:  # not answered yet: each sample may need expanding
        for index in range(teacher.samples):
            request = expansion_request(question, teacher, config, index, "")
            expand.possible.append(request)
            expand.extra_tokens[request.id] = answer
            expand.extra_basis = f"the summary it expands: {basis}"
        return
    for index, sample in enumerate(samples):
        parsed = parse_reply(sample, teacher.reasoning)
        if needs_expansion(question, teacher, parsed, sample.get("finish_reason")) is None:
            expand.certain.append(expansion_request(question, teacher, config, index, (sample.get("text") or "").strip()))


def _judged(question: Question, teacher: Any, row: dict | None, expanded: dict, judge: PlannedCalls,
            answer: int, basis: str, cfg: Any) -> None:
    traces = teacher_traces(question, teacher, row, expanded)
    if not traces:  # not answered yet: every sample may become a trace to rate
        traces = [{"id": trace_id(question.id, teacher.name, i), "reasoning": "", "final": "", "pending": True}
                  for i in range(teacher.samples)]
    for trace in traces:
        failures = [] if trace.get("pending") else rule_failures(trace, question, cfg)
        if failures and failures != ["pending_expansion"]:
            continue
        request = judge_request(trace, question, cfg)
        if failures or trace.get("pending"):
            judge.possible.append(request)
            judge.extra_tokens[request.id] = answer
            judge.extra_basis = f"the trace it rates: {basis}"
        else:
            judge.certain.append(request)
