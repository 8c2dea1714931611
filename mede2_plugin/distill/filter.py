"""Trace filter (paper 3.2): (i) correct final answer, (ii) structure, (iii) coherence by a judge.

:func:`rule_failures` runs the rule checks of :class:`~mede2_plugin.distill.config.TraceFilterConfig`
(no call); traces passing them are rated by the judge (``filter/<judge>.results.jsonl``,
resumable) and :func:`judge_verdict` reads the rating. ``filter/records.jsonl`` holds every trace
with ``passed``, its ``reason`` (first failure) and all failed checks.

The traces' reasoning and final answer come bare from :func:`mede2_plugin.distill.traces.parse_reply`
(every teacher format is listed there); the rule checks judge what will be trained on,
``<think>reasoning</think><answer>final</answer>`` built once. The judge's rating is read by the
shared JSON reader (:func:`mede2_plugin.core.replies.sample_json`): bare JSON, a ```` ```json ````
fence, prose around the JSON, a think block before it, Gemini JSON with thoughts apart; scores
``4``, ``4.0``, ``"4"`` or ``"4/5"``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from mede2_plugin.client.calls import call_models
from mede2_plugin.client.config import ChatRequest
from mede2_plugin.core.answers import (
    boxed_contents,
    extract_choice,
    has_think_answer_structure,
    is_truncated,
)
from mede2_plugin.core.chat_format import assistant_response
from mede2_plugin.core.jsonl import read_jsonl, write_jsonl
from mede2_plugin.core.prompts import render, template_hash
from mede2_plugin.core.questions import Question
from mede2_plugin.core.replies import sample_json
from mede2_plugin.core.steps import StepReport, row_error, row_samples, slug
from mede2_plugin.distill.config import DistillConfig, TraceFilterConfig
from mede2_plugin.distill.generate import EXPANSION_PENDING

CRITERIA = ("logical_structure", "coherence")
RESPONSE_SCHEMA = {
    "type": "object",
    "properties": {"logical_structure": {"type": "integer"}, "coherence": {"type": "integer"},
                   "comment": {"type": "string"}},
    "required": ["logical_structure", "coherence", "comment"],
}
PASSED = "passed"


def rule_failures(trace: dict[str, Any], question: Question, cfg: TraceFilterConfig) -> list[str]:
    """Every rule check the trace fails, in the documented order (empty: it passes)."""
    expansion = trace.get("expansion") or {}
    if expansion.get("status") == EXPANSION_PENDING:
        return ["pending_expansion"]
    failures = []
    reasoning = (trace.get("reasoning") or "").strip()
    final = (trace.get("final") or "").strip()
    if trace.get("finish_reason") == "length" or expansion.get("finish_reason") == "length" \
            or trace.get("unclosed_think") or is_truncated(final):
        failures.append("truncated")
    if cfg.require_boxed and not boxed_contents(final):
        failures.append("missing_boxed")
    letter = extract_choice(final, question.options)
    if letter is None:
        failures.append("no_answer")
    elif letter != question.answer:
        failures.append("wrong_answer")
    if not reasoning:
        failures.append("no_reasoning")
    elif not final or not has_think_answer_structure(assistant_response(reasoning, final)):
        failures.append("bad_structure")
    if reasoning and len(reasoning) < cfg.min_reasoning_chars:
        failures.append("too_short")
    if len(reasoning) > cfg.max_reasoning_chars:
        failures.append("too_long")
    return failures


def judge_request(trace: dict[str, Any], question: Question, cfg: TraceFilterConfig) -> ChatRequest:
    prompt = render(cfg.judge_template, question=question.question, patient_info=question.patient_info,
                    options=question.options, answer=question.answer, answer_text=question.answer_text or "",
                    reasoning=trace["reasoning"], final=trace["final"]).strip()
    return ChatRequest(id=trace["id"], messages=[{"role": "user", "content": prompt}], n=1,
                       temperature=cfg.judge_temperature, max_tokens=cfg.judge_max_tokens,
                       response_schema=RESPONSE_SCHEMA if cfg.use_json_schema else None)


def _score(value: Any) -> int | None:
    """A 1-5 score from ``4``, ``4.0``, ``"4"`` or ``"4/5"``; None otherwise."""
    if isinstance(value, bool):
        return None
    try:
        number = float(str(value).strip().split("/")[0])
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() and 1 <= number <= 5 else None


def judge_verdict(row: dict[str, Any] | None, cfg: TraceFilterConfig) -> tuple[str, dict[str, Any] | None]:
    """``(reason, rating)`` from a judge reply: ``passed``, ``incoherent``, ``judge_unparsable``
    or ``pending_judge``."""
    samples = row_samples(row)
    if not samples:
        return "pending_judge", {"error": row_error(row)}
    reply = sample_json(samples[0])
    scores = {name: _score(reply.get(name)) if isinstance(reply, dict) else None for name in CRITERIA}
    if any(v is None for v in scores.values()):
        return "judge_unparsable", {"raw": samples[0].get("text") or ""}
    rating = {**scores, "score": sum(scores.values()), "comment": str(reply.get("comment") or "")}
    if min(scores.values()) < cfg.min_judge_score:
        return "incoherent", rating
    return PASSED, rating


def load_traces(config: DistillConfig) -> list[dict[str, Any]]:
    path = config.out / "generate" / "traces.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no traces yet; run `mede2 distill generate` first")
    return list(read_jsonl(path))


def run_filter(questions: list[Question], config: DistillConfig) -> StepReport:
    """Check every trace, rate the rule-passing ones with the judge, write ``filter/records.jsonl``."""
    cfg = config.filter
    folder = config.out / "filter"
    folder.mkdir(parents=True, exist_ok=True)
    by_id = {q.id: q for q in questions}
    traces = load_traces(config)
    unknown = sorted({t["question_id"] for t in traces} - set(by_id))
    if unknown:
        raise ValueError(f"{config.out / 'generate' / 'traces.jsonl'}: traces of questions not in the "
                         f"question bank: {unknown[:5]}")
    failures = {t["id"]: rule_failures(t, by_id[t["question_id"]], cfg) for t in traces}
    calls: list[dict[str, Any]] = []
    ratings: dict[str, dict[str, Any]] = {}
    if cfg.judge is not None:
        requests = [judge_request(t, by_id[t["question_id"]], cfg) for t in traces if not failures[t["id"]]]
        ratings, summary = call_models(requests, folder / f"judge-{slug(cfg.judge.model)}.results.jsonl",
                                       cfg.judge, "distill:judge")
        calls.append(summary)
    records = []
    for trace in traces:
        failed = failures[trace["id"]]
        record: dict[str, Any] = {"id": trace["id"], "question_id": trace["question_id"], "teacher": trace["teacher"],
                                  "sample": trace["sample"], "source": trace["source"],
                                  "reasoning_chars": len(trace.get("reasoning") or ""),
                                  "extracted": extract_choice(trace.get("final") or "", by_id[trace["question_id"]].options),
                                  "failed_checks": failed, "judge": None}
        if failed:
            reason = failed[0]
        elif cfg.judge is None:
            reason = PASSED
        else:
            reason, record["judge"] = judge_verdict(ratings.get(trace["id"]), cfg)
            if reason != PASSED:
                record["failed_checks"] = [reason]
        record.update(passed=reason == PASSED, kept=reason == PASSED, reason=reason)
        records.append(record)
    write_jsonl(folder / "records.jsonl", records)
    questions_with_pass = len({r["question_id"] for r in records if r["passed"]})
    all_failures = Counter(check for r in records for check in r["failed_checks"])
    report = StepReport.from_records(
        "filter", records, calls=calls, outputs={"records": str(folder / "records.jsonl")},
        extra={"questions_with_passing_trace": questions_with_pass,
               "questions_with_traces": len({r["question_id"] for r in records}),
               "passed_by_teacher": dict(Counter(r["teacher"] for r in records if r["passed"])),
               "all_failed_checks": dict(all_failures),
               "judge_prompt_hash": template_hash(cfg.judge_template) if cfg.judge else None})
    report.write(folder / "report.json")
    return report
