"""Difficulty filter (paper 3.1): drop what a baseline solver answers, keep what a strong one can.

Every attempt is stored in ``attempts.jsonl`` with the reply text, the extracted letter
(:func:`mede2_plugin.core.answers.extract_choice`) and whether it is right; the decision is then a pure
function of those attempts and the thresholds (:func:`decide`), so ``mede2 curate rethreshold``
can change the thresholds without a single new call.

The letter is read from the reply's text only (solvers: Qwen2.5-VL, InternVL, GPT-4o, o1, Gemini,
reasoning models): ``\\boxed{B}`` as asked, with or without prose; a ``<think>`` block before the
answer, or only its ``</think>`` (the answer is read after it); ``<answer>`` tags; reasoning sent
apart (``reasoning_content``, Gemini thoughts) is not looked at; "The answer is (B)" or the option
text without a box. A reply cut off inside ``<think>`` has no answer: wrong, not guessed.

Files in the step folder: ``<solver>.results.jsonl`` (``run_batch`` replies, one file per
solver), ``attempts.jsonl``, ``records.jsonl``, ``kept.jsonl``, ``report.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mede2_plugin.client.calls import call_models
from mede2_plugin.client.config import ChatRequest
from mede2_plugin.core.answers import extract_choice
from mede2_plugin.core.chat_format import question_messages
from mede2_plugin.core.jsonl import read_jsonl, write_jsonl
from mede2_plugin.core.prompts import template_hash
from mede2_plugin.core.questions import Question
from mede2_plugin.core.steps import (
    KEPT,
    StepReport,
    row_error,
    row_samples,
    write_step_outputs,
)
from mede2_plugin.curate.config import CurateConfig, DifficultyConfig, SolverConfig

ANSWERED, NOT_ASKED, FAILED, MISSING = "answered", "not_asked", "failed", "missing"


def solver_request(question: Question, solver: SolverConfig, config: CurateConfig) -> ChatRequest:
    """One solver request: ``solver.samples`` answers to ``question``, keyed by the question id."""
    messages = question_messages(question, solver.prompt_template, solver.system_template,
                                 paper_system=solver.paper_system, media=config.media(),
                                 send_images=solver.send_images, embed_images=config.embed_images)
    return ChatRequest(id=question.id, messages=messages, n=solver.samples,
                       temperature=solver.temperature, max_tokens=solver.max_tokens)


def solver_attempts(question: Question, solver: SolverConfig, row: dict[str, Any] | None,
                    asked: bool = True) -> dict[str, Any]:
    """The attempts of one solver at one question, each with its extracted letter and correctness."""
    entry: dict[str, Any] = {"solver": solver.label, "model": solver.backend.model}
    if not asked:
        return {**entry, "status": NOT_ASKED, "attempts": [], "correct": 0}
    samples = row_samples(row)
    if samples is None:
        return {**entry, "status": FAILED if row is not None else MISSING, "attempts": [], "correct": 0,
                "error": row_error(row)}
    attempts = []
    for sample in samples:
        extracted = extract_choice(sample.get("text") or "", question.options)
        attempts.append({"text": sample.get("text") or "", "extracted": extracted,
                         "correct": extracted is not None and extracted == question.answer,
                         "finish_reason": sample.get("finish_reason")})
    return {**entry, "status": ANSWERED, "attempts": attempts,
            "correct": sum(1 for a in attempts if a["correct"])}


def baseline_solved(entry: dict[str, Any] | None, cfg: DifficultyConfig) -> bool | None:
    """True/False once the baseline answered; None while it has not (or there is no baseline)."""
    if entry is None or entry["status"] != ANSWERED:
        return None
    return sum(1 for a in entry["attempts"] if a["correct"]) >= cfg.baseline_solved_min


def decide(record: dict[str, Any], cfg: DifficultyConfig) -> tuple[bool, str]:
    """``(kept, reason)`` of one attempts record under the thresholds of ``cfg``.

    Reasons: ``kept``, ``no_answer_key``, ``pending_baseline``, ``baseline_solved``,
    ``pending_strong``, ``strong_never_solved``, ``strong_below_min``, ``strong_above_max``.
    Correctness is recounted from the stored attempts, so changing an attempt's ``correct``
    (e.g. after a manual review) changes the decision.
    """
    if not record.get("answer"):
        return False, "no_answer_key"
    if cfg.baseline is not None:
        solved = baseline_solved(record.get("baseline"), cfg)
        if solved is None:
            return False, "pending_baseline"
        if solved and cfg.drop_baseline_solved:
            return False, "baseline_solved"
    strong = record.get("strong") or []
    if not strong or any(entry["status"] != ANSWERED for entry in strong):
        return False, "pending_strong"
    correct = sum(1 for entry in strong for a in entry["attempts"] if a["correct"])
    if correct < cfg.min_strong_correct:
        return False, "strong_never_solved" if correct == 0 else "strong_below_min"
    if cfg.max_strong_correct is not None and correct > cfg.max_strong_correct:
        return False, "strong_above_max"
    return True, KEPT


def decision_record(record: dict[str, Any], cfg: DifficultyConfig) -> dict[str, Any]:
    kept, reason = decide(record, cfg)
    baseline = record.get("baseline")
    strong = record.get("strong") or []
    return {"id": record["id"], "kept": kept, "reason": reason, "answer": record.get("answer"),
            "baseline_correct": None if baseline is None else sum(a["correct"] for a in baseline["attempts"]),
            "baseline_attempts": None if baseline is None else len(baseline["attempts"]),
            "strong_correct": sum(a["correct"] for e in strong for a in e["attempts"]),
            "strong_attempts": sum(len(e["attempts"]) for e in strong)}


def run_difficulty(questions: list[Question], config: CurateConfig, step_dir: Path) -> StepReport:
    """Ask the solvers (resumably), store every attempt, decide, and write the step's outputs."""
    cfg = config.difficulty
    step_dir.mkdir(parents=True, exist_ok=True)
    answerable = [q for q in questions if q.answer]
    calls: list[dict[str, Any]] = []
    baseline_entries: dict[str, dict[str, Any]] = {}
    if cfg.baseline is not None:
        requests = [solver_request(q, cfg.baseline, config) for q in answerable]
        rows, summary = call_models(requests, step_dir / f"{cfg.baseline.label}.results.jsonl",
                                    cfg.baseline.backend, "curate:difficulty:baseline")
        calls.append(summary)
        baseline_entries = {q.id: solver_attempts(q, cfg.baseline, rows.get(q.id)) for q in answerable}

    def strong_needed(question: Question) -> bool:
        if cfg.baseline is None or cfg.strong_on_all:
            return True
        solved = baseline_solved(baseline_entries[question.id], cfg)
        return solved is False or (solved is True and not cfg.drop_baseline_solved)

    asked = {q.id for q in answerable if strong_needed(q)}
    strong_entries: dict[str, list[dict[str, Any]]] = {q.id: [] for q in answerable}
    for index, solver in enumerate(cfg.strong):
        requests = [solver_request(q, solver, config) for q in answerable if q.id in asked]
        rows, summary = call_models(requests, step_dir / f"{solver.label}.results.jsonl", solver.backend,
                                    f"curate:difficulty:strong{index}")
        calls.append(summary)
        for question in answerable:
            strong_entries[question.id].append(
                solver_attempts(question, solver, rows.get(question.id), asked=question.id in asked))
    attempts = [{"id": q.id, "answer": q.answer, "baseline": baseline_entries.get(q.id),
                 "strong": strong_entries.get(q.id, [])} for q in questions]
    write_jsonl(step_dir / "attempts.jsonl", attempts)
    solvers = ([cfg.baseline] if cfg.baseline else []) + list(cfg.strong)
    prompts = {s.label: template_hash(s.prompt_template) for s in solvers}
    return decide_step(questions, cfg, step_dir, calls, prompts)


def decide_step(questions: list[Question], cfg: DifficultyConfig, step_dir: Path,
                calls: list[dict[str, Any]] | None = None, prompts: dict[str, str] | None = None) -> StepReport:
    """Decide every question from ``attempts.jsonl`` (no calls) and write the step's outputs."""
    path = step_dir / "attempts.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no stored attempts; run `mede2 curate difficulty` first")
    stored = {str(r["id"]): r for r in read_jsonl(path)}
    by_id = {q.id: q for q in questions}
    missing = [q.id for q in questions if q.id not in stored]
    records = []
    for question in questions:
        record = stored.get(question.id) or {"id": question.id, "answer": question.answer,
                                             "baseline": None, "strong": []}
        records.append(decision_record(record, cfg))
    extra = {"thresholds": {"baseline_solved_min": cfg.baseline_solved_min,
                            "min_strong_correct": cfg.min_strong_correct,
                            "max_strong_correct": cfg.max_strong_correct,
                            "drop_baseline_solved": cfg.drop_baseline_solved},
             "attempts": str(path), "without_attempts": len(missing)}
    if prompts:
        extra["prompt_hashes"] = prompts
    report = write_step_outputs(step_dir, "difficulty", records, by_id, calls, extra)
    report.outputs["attempts"] = str(path)
    report.write(step_dir / "report.json")
    return report
