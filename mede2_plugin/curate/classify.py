"""Image-question classifier (paper 3.1): pattern recognition / knowledge recall vs reasoning.

The classifier (paper: GPT-4o) sees the question, its options and (by default) its images and
returns ``{"category": ..., "rationale": ...}``. With several samples the majority decides.
Questions in a dropped category are dropped with the category as the reason. Text-only
questions pass unclassified unless ``text_questions: classify``.

Replies read (:func:`parse_category`; classifiers: GPT-4o, Gemini, open models): the backend's
schema-parsed JSON; bare JSON; JSON in a ```` ```json ```` fence or with prose around it; JSON
after a ``<think>`` block (Gemini thoughts and ``reasoning_content`` stay out of the text); labels
in any case or spelling (``"Pattern Recognition"``, ``"knowledge-recall"``); no JSON at all but
the answer naming exactly one category ("This is clearly knowledge recall.").

Files in the step folder: ``<classifier>.results.jsonl``, ``records.jsonl`` (each question with
its votes and rationales), ``kept.jsonl``, ``report.json``.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from mede2_plugin.client.config import ChatRequest
from mede2_plugin.core.prompts import template_hash
from mede2_plugin.core.questions import Question
from mede2_plugin.core.replies import sample_json, visible_text
from mede2_plugin.core.steps import (
    KEPT,
    StepReport,
    row_error,
    row_samples,
    write_step_outputs,
)
from mede2_plugin.curate.asking import ask_image_questions, json_question_request
from mede2_plugin.curate.config import CATEGORIES, ClassifyConfig, CurateConfig

RESPONSE_SCHEMA = {
    "type": "object",
    "properties": {"category": {"type": "string", "enum": list(CATEGORIES)},
                   "rationale": {"type": "string"}},
    "required": ["category", "rationale"],
}

_SYNONYMS = {
    "pattern_recognition": ("pattern recognition", "pattern_recognition", "pattern-recognition",
                            "image recognition", "recognition"),
    "knowledge_recall": ("knowledge recall", "knowledge_recall", "knowledge-recall", "recall", "factual recall"),
    "reasoning": ("clinical reasoning", "reasoning"),
}


def normalise_category(value: Any) -> str | None:
    """A category name from a label such as ``"Pattern Recognition"``; None when unknown."""
    if not isinstance(value, str):
        return None
    text = re.sub(r"[\s\-]+", " ", value.strip().casefold().replace("_", " "))
    for category, names in _SYNONYMS.items():
        if text in names:
            return category
    return None


def parse_category(sample: dict[str, Any]) -> tuple[str | None, str]:
    """``(category, rationale)`` from one classifier reply; category None when it cannot be told.

    JSON ``{"category": ...}`` first (the shared reader, :func:`mede2_plugin.core.replies.sample_json`);
    otherwise the reply's answer part (reasoning left out) counts when it names exactly one category.
    """
    reply = sample_json(sample)
    if isinstance(reply, dict):
        category = normalise_category(reply.get("category"))
        if category is not None:
            return category, str(reply.get("rationale") or "")
    text = (visible_text(sample.get("text")) or "").casefold()
    named = {c for c, names in _SYNONYMS.items() for n in names[:3] if n in text}
    if len(named) == 1:
        return named.pop(), ""
    return None, ""


def vote(categories: list[str | None], tie_order: list[str]) -> str | None:
    """The majority category (None votes ignored); ties go to the earliest in ``tie_order``."""
    counts = Counter(c for c in categories if c is not None)
    if not counts:
        return None
    best = max(counts.values())
    tied = [c for c in counts if counts[c] == best]
    order = {c: i for i, c in enumerate(list(tie_order) + [c for c in CATEGORIES if c not in tie_order])}
    return min(tied, key=lambda c: order[c])


def classify_request(question: Question, cfg: ClassifyConfig, config: CurateConfig) -> ChatRequest:
    return json_question_request(question, cfg, RESPONSE_SCHEMA, n=cfg.samples, media=config.media(),
                                 embed_images=config.embed_images, categories=CATEGORIES)


def classification_record(question: Question, row: dict[str, Any] | None, cfg: ClassifyConfig,
                          asked: bool) -> dict[str, Any]:
    """The decision for one question from its classifier reply (or its absence)."""
    record: dict[str, Any] = {"id": question.id, "has_images": bool(question.images), "classified": asked}
    if not asked:
        return {**record, "kept": True, "reason": KEPT, "category": None}
    samples = row_samples(row)
    if samples is None:
        return {**record, "kept": False, "reason": "pending_classifier", "category": None, "error": row_error(row)}
    parsed = [parse_category(s) for s in samples]
    category = vote([c for c, _ in parsed], cfg.tie_order)
    record.update(category=category, votes=dict(Counter(c or "unparsable" for c, _ in parsed)),
                  classifications=[{"category": c, "rationale": r, "text": s.get("text") or ""}
                                   for (c, r), s in zip(parsed, samples)])
    if category is None:
        return {**record, "kept": False, "reason": "classifier_unparsable"}
    if category in cfg.drop_categories:
        return {**record, "kept": False, "reason": category}
    return {**record, "kept": True, "reason": KEPT}


def run_classify(questions: list[Question], config: CurateConfig, step_dir: Path) -> StepReport:
    """Classify the image questions (resumably), decide, and write the step's outputs."""
    cfg = config.classify
    to_ask, rows, summary = ask_image_questions(questions, cfg.text_questions == "classify",
                                                lambda q: classify_request(q, cfg, config), cfg.classifier,
                                                step_dir, "curate:classify")
    asked = {q.id for q in to_ask}
    records = [classification_record(q, rows.get(q.id), cfg, q.id in asked) for q in questions]
    categories = Counter(r["category"] for r in records if r.get("category"))
    return write_step_outputs(step_dir, "classify", records, {q.id: q for q in questions}, [summary],
                              extra={"classified": len(to_ask), "categories": dict(categories),
                                     "prompt_hash": template_hash(cfg.prompt_template)})
