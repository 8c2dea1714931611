"""Teacher traces (paper 3.2): every teacher answers every question several times.

For each teacher: one request per question with ``samples`` answers
(``generate/<teacher>.results.jsonl``); summary-only replies are expanded in a second turn
(``generate/<teacher>.expand.results.jsonl``). Every sample becomes a trace in
``generate/traces.jsonl`` with id ``<question id>/<teacher>/<sample>``, its reasoning, final
answer, where the reasoning came from, and the finish reasons. Both call files are resumable.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from mede2_plugin.client.calls import call_models
from mede2_plugin.client.config import ChatRequest
from mede2_plugin.core.answers import extract_choice, is_truncated
from mede2_plugin.core.chat_format import question_messages
from mede2_plugin.core.jsonl import write_jsonl
from mede2_plugin.core.prompts import render, template_hash
from mede2_plugin.core.questions import Question
from mede2_plugin.core.steps import StepReport, row_error, row_samples, slug
from mede2_plugin.distill.config import DistillConfig, TeacherConfig
from mede2_plugin.distill.traces import (
    SOURCE_EXPANDED,
    SOURCE_SUMMARY,
    expansion_text,
    parse_reply,
)

EXPANSION_DONE, EXPANSION_PENDING = "done", "pending"


def trace_id(question_id: str, teacher: str, sample: int) -> str:
    return f"{question_id}/{teacher}/{sample}"


def teacher_messages(question: Question, teacher: TeacherConfig, config: DistillConfig) -> list[dict[str, Any]]:
    return question_messages(question, teacher.prompt_template, paper_system=teacher.paper_system,
                             media=config.media(), send_images=True, embed_images=config.embed_images)


def teacher_request(question: Question, teacher: TeacherConfig, config: DistillConfig) -> ChatRequest:
    return ChatRequest(id=question.id, messages=teacher_messages(question, teacher, config), n=teacher.samples,
                       temperature=teacher.temperature, top_p=teacher.top_p, max_tokens=teacher.max_tokens,
                       extra=dict(teacher.extra))


def expansion_request(question: Question, teacher: TeacherConfig, config: DistillConfig, sample: int,
                      summary: str) -> ChatRequest:
    """The paper's expansion step: the same conversation, the summary as the assistant turn, then
    a request to expand it into the complete reasoning process."""
    messages = teacher_messages(question, teacher, config) + [
        {"role": "assistant", "content": summary},
        {"role": "user", "content": render(teacher.expansion_template, summary=summary,
                                           answer_letter=question.answer).strip()},
    ]
    return ChatRequest(id=f"{question.id}/{sample}", messages=messages, n=1, temperature=teacher.expansion_temperature,
                       max_tokens=teacher.expansion_max_tokens, extra=dict(teacher.extra))


def needs_expansion(question: Question, teacher: TeacherConfig, parsed, finish_reason: str | None) -> str | None:
    """Why a summary is not expanded (``not_needed``, ``wrong_answer``, ``truncated``), or None to expand."""
    if parsed.source != SOURCE_SUMMARY or not teacher.expand_summary:
        return "not_needed"
    if teacher.expand_only_correct:
        if finish_reason == "length" or is_truncated(parsed.final):
            return "truncated"
        if extract_choice(parsed.final, question.options) != question.answer:
            return "wrong_answer"
    return None


def teacher_traces(question: Question, teacher: TeacherConfig, row: dict[str, Any] | None,
                   expansions: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The traces of one teacher for one question (empty while its call failed or is missing)."""
    samples = row_samples(row)
    if samples is None:
        return []
    traces = []
    for index, sample in enumerate(samples):
        parsed = parse_reply(sample, teacher.reasoning)
        trace: dict[str, Any] = {
            "id": trace_id(question.id, teacher.name, index), "question_id": question.id,
            "teacher": teacher.name, "model": teacher.backend.model, "sample": index,
            "source": parsed.source, "reasoning": parsed.reasoning, "final": parsed.final,
            "finish_reason": sample.get("finish_reason"), "unclosed_think": parsed.unclosed_think,
            "raw_text": sample.get("text") or "", "raw_reasoning": sample.get("reasoning"), "expansion": None}
        skip = needs_expansion(question, teacher, parsed, sample.get("finish_reason"))
        if skip == "not_needed":
            traces.append(trace)
            continue
        if skip is not None:
            trace["expansion"] = {"status": f"skipped_{skip}"}
            traces.append(trace)
            continue
        reply = expansions.get(f"{question.id}/{index}")
        expanded = row_samples(reply)
        if not expanded:
            trace["expansion"] = {"status": EXPANSION_PENDING, "error": row_error(reply)}
        else:
            trace.update(source=SOURCE_EXPANDED, reasoning=expansion_text(expanded[0]) or None, summary=parsed.final)
            trace["expansion"] = {"status": EXPANSION_DONE, "finish_reason": expanded[0].get("finish_reason"),
                                  "raw_text": expanded[0].get("text") or ""}
        traces.append(trace)
    return traces


def select_questions(questions: list[Question], config: DistillConfig) -> tuple[list[Question], list[dict[str, Any]]]:
    """Questions the teachers get, and records of those left out (no answer key, images)."""
    usable, left_out = [], []
    for question in questions:
        if not question.answer:
            left_out.append({"id": question.id, "kept": False, "reason": "no_answer_key"})
        elif config.text_only and question.images:
            left_out.append({"id": question.id, "kept": False, "reason": "has_images"})
        else:
            usable.append(question)
    return usable, left_out


def run_generate(questions: list[Question], config: DistillConfig) -> StepReport:
    """Ask every teacher (and expand summaries), resumably; write ``generate/traces.jsonl``."""
    folder = config.out / "generate"
    folder.mkdir(parents=True, exist_ok=True)
    usable, records = select_questions(questions, config)
    traces: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    per_question: Counter[str] = Counter()
    pending_teacher: Counter[str] = Counter()
    for teacher in config.teachers:
        label = slug(teacher.name)
        rows, summary = call_models([teacher_request(q, teacher, config) for q in usable],
                                    folder / f"{label}.results.jsonl", teacher.backend, f"distill:{teacher.name}")
        calls.append(summary)
        expansion_requests = []
        for question in usable:
            for index, sample in enumerate(row_samples(rows.get(question.id)) or []):
                parsed = parse_reply(sample, teacher.reasoning)
                if needs_expansion(question, teacher, parsed, sample.get("finish_reason")) is None:
                    summary_turn = (sample.get("text") or "").strip()  # the reply as the teacher wrote it
                    expansion_requests.append(expansion_request(question, teacher, config, index, summary_turn))
        expansions: dict[str, dict[str, Any]] = {}
        if expansion_requests or (folder / f"{label}.expand.results.jsonl").exists():
            expansions, summary = call_models(expansion_requests, folder / f"{label}.expand.results.jsonl",
                                              teacher.backend, f"distill:{teacher.name}:expand")
            calls.append(summary)
        for question in usable:
            found = teacher_traces(question, teacher, rows.get(question.id), expansions)
            if not found:
                pending_teacher[question.id] += 1
            per_question[question.id] += len(found)
            traces.extend(found)
    write_jsonl(folder / "traces.jsonl", traces)
    for question in usable:
        if per_question[question.id]:
            records.append({"id": question.id, "kept": True, "reason": "kept"})
        else:
            records.append({"id": question.id, "kept": False, "reason": "pending_teacher"})
    sources = Counter(t["source"] for t in traces)
    expansion_status = Counter(t["expansion"]["status"] for t in traces if t.get("expansion"))
    report = StepReport.from_records(
        "generate", records, calls=calls,
        outputs={"traces": str(folder / "traces.jsonl")},
        extra={"traces": len(traces), "traces_by_teacher": dict(Counter(t["teacher"] for t in traces)),
               "reasoning_sources": dict(sources), "expansions": dict(expansion_status),
               "teacher_calls_pending": sum(pending_teacher.values()),
               "prompt_hashes": {t.name: {"prompt": template_hash(t.prompt_template),
                                          "expansion": template_hash(t.expansion_template)} for t in config.teachers}})
    report.pending = max(report.pending, sum(pending_teacher.values()) + expansion_status.get(EXPANSION_PENDING, 0))
    report.write(folder / "report.json")
    return report
