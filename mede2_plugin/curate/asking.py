"""How the curation steps ask their models about questions (classifier, caption rewriter)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mede2_plugin.client.calls import call_models
from mede2_plugin.client.config import BackendConfig, ChatRequest
from mede2_plugin.core.chat_format import question_messages
from mede2_plugin.core.media import MediaPolicy
from mede2_plugin.core.questions import Question
from mede2_plugin.core.steps import slug


def json_question_request(question: Question, settings: Any, schema: dict[str, Any], n: int = 1,
                          media: MediaPolicy | None = None, embed_images: bool = True,
                          **variables: Any) -> ChatRequest:
    """A request for one question that asks for a JSON reply (classifier, caption rewriter).

    ``settings`` is the step's config: ``prompt_template``, ``send_images``, ``temperature``,
    ``max_tokens`` and ``use_json_schema`` (send ``schema`` as the response schema).
    """
    messages = question_messages(question, settings.prompt_template, media=media,
                                 send_images=settings.send_images, embed_images=embed_images, **variables)
    return ChatRequest(id=question.id, messages=messages, n=n, temperature=settings.temperature,
                       max_tokens=settings.max_tokens, response_schema=schema if settings.use_json_schema else None)


def ask_image_questions(questions: Sequence[Question], ask_text_questions: bool,
                        request: Callable[[Question], ChatRequest], backend: BackendConfig, step_dir: Path,
                        stage: str) -> tuple[list[Question], dict[str, dict[str, Any]], dict[str, Any]]:
    """Ask ``backend`` about the image questions (text-only ones too with ``ask_text_questions``).

    Replies go to ``step_dir/<model>.results.jsonl`` (see :func:`call_models`). Returns the
    questions asked, the result rows by id, and the run summary.
    """
    step_dir.mkdir(parents=True, exist_ok=True)
    to_ask = [q for q in questions if q.images or ask_text_questions]
    rows, summary = call_models([request(q) for q in to_ask], step_dir / f"{slug(backend.model)}.results.jsonl",
                                backend, stage)
    return to_ask, rows, summary
