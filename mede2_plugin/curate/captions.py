"""Caption stripping (paper 3.3): rewrite image questions so the text no longer describes the image.

The rewriter (paper: GPT-4o, with human review) returns ``{"patient_info", "question", "removed"}``.
Options, answer and images are never taken from the reply: the kept question carries the
original ones, with the rewritten stem and patient information, and the original text kept
beside the rewrite in ``metadata["caption_stripping"]``. Each rewrite is checked
(:func:`check_rewrite`, rules in :class:`~mede2_plugin.curate.config.StripConfig`); a failed
rewrite drops the question, or keeps it unrewritten with ``on_check_failure: keep_original``.
[human review] A reviewer's decision in ``mede2 review`` (accept, edit, reject) overrides the
model's rewrite and the checks (:mod:`mede2_plugin.core.review_decisions`); a rerun applies it again.

Replies read (:func:`parse_rewrite`, through the shared JSON reader
:func:`mede2_plugin.core.replies.sample_json`; rewriters: GPT-4o, Gemini, open models): the backend's
schema-parsed JSON; bare JSON; JSON in a ```` ```json ```` fence or with prose around it; JSON
after a ``<think>`` block; ``removed`` as a list or a single string. No JSON object with a
non-empty ``question`` is ``rewrite_unparsable``.

Files in the step folder: ``<rewriter>.results.jsonl``, ``records.jsonl`` (original and rewrite
side by side, checks), ``review.md`` (the same for people), ``kept.jsonl``, ``report.json``.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path
from typing import Any

from mede2_plugin.client.config import ChatRequest
from mede2_plugin.core.files import atomic_write_text
from mede2_plugin.core.prompts import template_hash
from mede2_plugin.core.questions import Question
from mede2_plugin.core.replies import sample_json
from mede2_plugin.core.review_decisions import (
    apply_rewrite_decision,
    review_counts,
    rewrite_decisions,
)
from mede2_plugin.core.steps import (
    KEPT,
    StepReport,
    row_error,
    row_samples,
    write_step_outputs,
)
from mede2_plugin.curate.asking import ask_image_questions, json_question_request
from mede2_plugin.curate.config import CurateConfig, StripConfig

RESPONSE_SCHEMA = {
    "type": "object",
    "properties": {"patient_info": {"type": "string"}, "question": {"type": "string"},
                   "removed": {"type": "array", "items": {"type": "string"}}},
    "required": ["patient_info", "question", "removed"],
}
NUMBER = re.compile(r"\d+(?:[.,]\d+)*(?:/\d+(?:[.,]\d+)*)*")
WORD = re.compile(r"[a-z0-9]+")
SENTENCE_END = re.compile(r"(?<=[.?!])\s+")


def _words(text: str) -> list[str]:
    return WORD.findall(text.casefold())


def _normalised(text: str) -> str:
    return " ".join(_words(text))


def numbers(text: str) -> set[str]:
    """Numbers in a text (``45``, ``38.5``, ``120/80``), the facts a rewrite must keep."""
    return set(NUMBER.findall(text))


def ask_sentence(text: str) -> str:
    """The question's ask: the last sentence with a question mark, else the last sentence."""
    sentences = [s for s in SENTENCE_END.split(text.strip()) if s.strip()]
    asks = [s for s in sentences if "?" in s]
    return (asks or sentences or [""])[-1]


def parse_rewrite(sample: dict[str, Any]) -> dict[str, Any] | None:
    """``{"patient_info", "question", "removed"}`` from a reply; None without a non-empty question."""
    reply = sample_json(sample)
    if not isinstance(reply, dict) or not isinstance(reply.get("question"), str) or not reply["question"].strip():
        return None
    removed = reply.get("removed") or []
    if isinstance(removed, str):
        removed = [removed]
    return {"patient_info": str(reply.get("patient_info") or "").strip(),
            "question": reply["question"].strip(),
            "removed": [str(r) for r in removed if str(r).strip()] if isinstance(removed, list) else []}


def check_rewrite(question: Question, rewrite: dict[str, Any], cfg: StripConfig) -> list[str]:
    """The names of the checks a rewrite fails (empty: it passes). See :class:`StripConfig`."""
    failures = []
    original = f"{question.patient_info} {question.question}".strip()
    new = f"{rewrite['patient_info']} {rewrite['question']}".strip()
    if cfg.check_numbers:
        removed = numbers(" ".join(rewrite["removed"]))
        kept_numbers, new_numbers = numbers(original), numbers(new)
        if (kept_numbers - new_numbers - removed) or (new_numbers - kept_numbers):
            failures.append("patient_facts_changed")
    answer_text = _normalised(question.answer_text or "")
    if len(answer_text) >= 4 and f" {answer_text} " in f" {_normalised(new)} " \
            and f" {answer_text} " not in f" {_normalised(original)} ":
        failures.append("answer_leaked")
    if cfg.min_ask_overlap > 0:
        old_ask, new_ask = set(_words(ask_sentence(question.question))), set(_words(ask_sentence(rewrite["question"])))
        if old_ask and len(old_ask & new_ask) / len(old_ask) < cfg.min_ask_overlap:
            failures.append("question_changed")
    if cfg.min_length_ratio > 0 and original and len(new) / len(original) < cfg.min_length_ratio:
        failures.append("over_deleted")
    return failures


def strip_request(question: Question, cfg: StripConfig, config: CurateConfig) -> ChatRequest:
    return json_question_request(question, cfg, RESPONSE_SCHEMA, media=config.media(),
                                 embed_images=config.embed_images)


def rewritten_question(question: Question, rewrite: dict[str, Any] | None, failures: list[str]) -> Question:
    """The question with the rewritten text (or the original when the rewrite failed), the
    original text kept beside it in ``metadata["caption_stripping"]``."""
    note = {"original_question": question.question, "original_patient_info": question.patient_info,
            "removed": (rewrite or {}).get("removed", []), "failed_checks": failures,
            "rewritten": bool(rewrite) and not failures}
    metadata = {**question.metadata, "caption_stripping": note}
    if rewrite is None or failures:
        return dataclasses.replace(question, metadata=metadata)
    return dataclasses.replace(question, question=rewrite["question"], patient_info=rewrite["patient_info"],
                               metadata=metadata)


def strip_record(question: Question, row: dict[str, Any] | None, cfg: StripConfig,
                 asked: bool) -> tuple[dict[str, Any], Question]:
    """The decision record for one question and the question to keep."""
    base: dict[str, Any] = {"id": question.id, "has_images": bool(question.images), "asked": asked,
                            "original": {"patient_info": question.patient_info, "question": question.question}}
    if not asked:
        return {**base, "kept": True, "reason": KEPT, "rewrite": None, "failed_checks": []}, question
    samples = row_samples(row)
    if samples is None:
        return {**base, "kept": False, "reason": "pending_rewriter", "error": row_error(row)}, question
    rewrite = parse_rewrite(samples[0]) if samples else None
    failures = ["rewrite_unparsable"] if rewrite is None else check_rewrite(question, rewrite, cfg)
    record = {**base, "rewrite": rewrite, "failed_checks": failures, "raw_reply": samples[0].get("text") if samples else "",
              "changed": bool(rewrite) and (rewrite["question"], rewrite["patient_info"])
              != (question.question, question.patient_info)}
    kept_question = rewritten_question(question, rewrite, failures)
    if not failures:
        return {**record, "kept": True, "reason": KEPT}, kept_question
    if cfg.on_check_failure == "keep_original":
        return {**record, "kept": True, "reason": KEPT, "kept_original": True}, kept_question
    return {**record, "kept": False, "reason": failures[0]}, kept_question


def review_markdown(records: list[dict[str, Any]]) -> str:
    """Original and rewrite side by side, for a person to review."""
    lines = ["# Caption stripping review", ""]
    for record in records:
        if not record.get("asked"):
            continue
        status = "kept" if record["kept"] else f"dropped ({record['reason']})"
        lines += [f"## {record['id']} - {status}", ""]
        if record.get("failed_checks"):
            lines += [f"Failed checks: {', '.join(record['failed_checks'])}", ""]
        original = record["original"]
        lines += ["Original:", "", f"> {original['patient_info']} {original['question']}".rstrip(), ""]
        rewrite = record.get("rewrite")
        if rewrite:
            lines += ["Rewrite:", "", f"> {rewrite['patient_info']} {rewrite['question']}".rstrip(), ""]
            if rewrite["removed"]:
                lines += ["Removed: " + "; ".join(f"`{r}`" for r in rewrite["removed"]), ""]
        elif record.get("error"):
            lines += [f"No reply: {record['error']}", ""]
    return "\n".join(lines) + "\n"


def run_strip(questions: list[Question], config: CurateConfig, step_dir: Path) -> StepReport:
    """Rewrite the image questions (resumably), check the rewrites, and write the step's outputs."""
    cfg = config.strip
    to_ask, rows, summary = ask_image_questions(questions, cfg.text_questions == "strip",
                                                lambda q: strip_request(q, cfg, config), cfg.rewriter,
                                                step_dir, "curate:strip")
    asked = {q.id for q in to_ask}
    records, replaced = [], {}
    decisions = rewrite_decisions(step_dir)  # [human review] the reviewers' decisions (mede2 review)
    for question in questions:
        record, kept_question = strip_record(question, rows.get(question.id), cfg, question.id in asked)
        if question.id in asked and question.id in decisions:  # [human review] a decision overrides the model's
            record, reviewed = apply_rewrite_decision(record, question, decisions[question.id], cfg.on_check_failure)
            kept_question = reviewed or kept_question
        records.append(record)
        replaced[question.id] = kept_question
    atomic_write_text(step_dir / "review.md", review_markdown(records))
    failed = Counter(check for r in records for check in r.get("failed_checks", []))
    extra = {"rewritten": sum(1 for r in records if r.get("kept") and r.get("rewrite") and not r["failed_checks"]),
             "unchanged": sum(1 for r in records if r.get("rewrite") and not r.get("changed")),
             "kept_original": sum(1 for r in records if r.get("kept_original")),
             "failed_checks": dict(failed), "prompt_hash": template_hash(cfg.prompt_template),
             "human_review": review_counts(records)}  # [human review]
    report = write_step_outputs(step_dir, "strip", records, {q.id: q for q in questions}, [summary], extra,
                                kept_questions=replaced)
    report.outputs["review"] = str(step_dir / "review.md")
    report.write(step_dir / "report.json")
    return report
