"""Rollouts: N reasoning candidates per image question from the Stage-I model M1.

Each question is asked exactly as training will later show it (the paper's think/answer
conversation from :mod:`mede2_plugin.core.chat_format`), with the caption-stripped question text:
``mede2 curate`` writes it into ``question`` itself (the original kept in
``metadata["caption_stripping"]``); other banks may carry it in ``metadata["stripped_question"]``
(the key is a setting). The client
layer samples ``n`` candidates per question on any backend (``local`` on a CPU, ``vllm`` on GPUs,
any OpenAI-compatible server) and keeps its raw results in ``<output>.results.jsonl``; this stage
turns them into one record per question in ``<output>`` (a :class:`~mede2_plugin.core.jsonl.JsonlStore`):

    {"id", "status": "ok" | "rejected" | "failed", "reason",
     "question": <Question as asked>, "text_from": where the stem came from,
     "original_question": <stem before stripping>, "system", "prompt", "images": [absolute paths],
     "candidates": [{"index", "text", "reasoning", "finish_reason"}],
     "usage": {"prompt_tokens", "completion_tokens"}, "cost_usd", "backend", "model"}

A candidate's ``text`` is M1's whole output, the text preference pairs train on. M1 writes
``<think>...</think><answer>...</answer>``; a server with a reasoning parser (vLLM
``--reasoning-parser``, ``llamafactory-cli api`` does not) returns the think part apart as
``reasoning_content``, which is put back in its ``<think>`` tags before the text
(:func:`mede2_plugin.core.replies.full_text`); ``reasoning`` keeps what the server sent apart.

A rerun skips questions already ``ok`` or ``rejected`` and tries ``failed`` ones again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mede2_plugin.core.chat_format import (
    openai_messages,
    question_images,
    system_prompt,
    user_prompt,
)
from mede2_plugin.core.jsonl import JsonlStore
from mede2_plugin.core.media import MediaPolicy, MediaRefused, local_path
from mede2_plugin.core.questions import Question, read_questions
from mede2_plugin.core.replies import full_text

OK, REJECTED, FAILED = "ok", "rejected", "failed"


@dataclass
class RolloutConfig:
    """Settings of the rollout stage.

    Attributes:
        num_candidates: candidates sampled per question (the paper: 8).
        temperature: sampling temperature (the paper does not say; 1.0 samples M1's own
            distribution, which is what rejection sampling wants).
        top_p: nucleus sampling (None: the backend's default).
        max_tokens: most new tokens per candidate; a cut-off candidate has no final answer and
            fails the pre-screen.
        seed: sampling seed passed to backends that take one (None: not sent).
        stripped_field: the ``Question.metadata`` key holding the caption-stripped stem; when
            present and non-empty it replaces ``Question.question`` (questions from
            ``mede2 curate`` are already stripped in place and need no such key).
        require_images: reject (keep, with a reason) questions without images: Stage-II is the
            image subset.
        media_dir: folder that relative image paths of the bank are relative to (None: the
            folder of the questions file); images may lie in it and in ``media_roots``.
        media_roots: further folders the questions' images may lie in.
        allow_outside_media: allow images anywhere (absolute paths, ``file://``, ``..`` out of the
            data folders); off, such a question is rejected with the reason.
        embed_images: send local images as data URLs (True) or as ``file://`` URIs (False, for
            in-process engines that read files themselves).
    """

    num_candidates: int = 8
    temperature: float = 1.0
    top_p: float | None = None
    max_tokens: int = 4096
    seed: int | None = None
    stripped_field: str = "stripped_question"
    require_images: bool = True
    media_dir: str | None = None
    media_roots: list[str] = field(default_factory=list)
    allow_outside_media: bool = False
    embed_images: bool = True

    def media(self) -> MediaPolicy:
        """Where the questions' images may come from."""
        return MediaPolicy.of(self.media_dir, self.media_roots, self.allow_outside_media)

    def __post_init__(self) -> None:
        if self.num_candidates < 1:
            raise ValueError(f"num_candidates must be >= 1, got {self.num_candidates}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")


@dataclass
class RolloutSummary:
    """What one rollout run did (the ``batch`` field is the client's summary, as a dict)."""

    questions: int = 0
    already_done: int = 0
    ok: int = 0
    rejected: int = 0
    failed: int = 0
    candidates: int = 0
    caption_stripped: int = 0
    output: str = ""
    batch: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def question_as_asked(question: Question, stripped_field: str = "stripped_question") -> tuple[Question, str]:
    """The question as M1 is asked it, and where its stem came from.

    ``mede2 curate`` writes the caption-stripped stem into ``question`` itself (the original in
    ``metadata["caption_stripping"]``): such a question is used as it is. Other banks may carry
    the stripped stem in ``metadata[stripped_field]``, which then replaces ``question``.
    """
    metadata = question.metadata or {}
    stripped = metadata.get(stripped_field)
    if isinstance(stripped, str) and stripped.strip():
        return dataclasses.replace(question, question=stripped.strip()), f"metadata.{stripped_field}"
    note = metadata.get("caption_stripping")
    if isinstance(note, dict) and note.get("rewritten"):
        return question, "question (caption-stripped by mede2 curate)"
    return question, "question"


def original_question(question: Question) -> str:
    """The stem before caption stripping, when the record keeps it."""
    note = (question.metadata or {}).get("caption_stripping")
    if isinstance(note, dict) and isinstance(note.get("original_question"), str):
        return note["original_question"]
    return question.question


def _check(question: Question, config: RolloutConfig) -> tuple[list[str], str]:
    """The question's images as they are read, and why it cannot be rolled out ("" when it can)."""
    try:
        images, refused = question_images(question, config.media()), ""
    except MediaRefused as err:
        images, refused = list(question.images), str(err)
    if not question.answer:
        return images, "no ground-truth answer"
    if question.answer not in question.options:
        return images, f"answer {question.answer!r} is not one of the options {sorted(question.options)}"
    if config.require_images and not images:
        return images, "no images (Stage-II uses image questions; set require_images=False to allow)"
    if refused:
        return images, refused
    missing = [p for p in images if local_path(p) is not None and not Path(p).is_file()]
    if missing:
        return images, f"image file not found: {missing[0]}"
    return images, ""


def build_record(question: Question, config: RolloutConfig) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    """The rollout record of a question (without candidates) and its chat messages (None if rejected)."""
    asked, text_from = question_as_asked(question, config.stripped_field)
    images, problem = _check(asked, config)
    asked = dataclasses.replace(asked, images=images)
    record: dict[str, Any] = {
        "id": question.id,
        "status": OK,
        "reason": "",
        "question": asked.to_dict(),
        "text_from": text_from,
        "original_question": original_question(question),
        "system": system_prompt(),
        "prompt": user_prompt(asked),
        "images": images,
        "candidates": [],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0},
        "cost_usd": None,
        "backend": None,
        "model": None,
    }
    if problem:
        record.update(status=REJECTED, reason=problem)
        return record, None
    return record, openai_messages(asked, embed_images=config.embed_images)


def results_path_for(output: str | Path) -> Path:
    """Where the client's raw results of ``output`` go: ``x.jsonl`` -> ``x.results.jsonl``."""
    output = Path(output)
    return output.with_name(output.stem + ".results.jsonl")


def run_rollouts(questions: Iterable[Question] | str | Path, output: str | Path, backend: Any,
                 config: RolloutConfig | None = None) -> RolloutSummary:
    """Sample candidates for every question not yet done; write/extend ``output``.

    Args:
        questions: Question objects, or a question file. A file's images must lie in its data
            folders (``media_dir``, default the file's folder, and ``media_roots``); Question
            objects built by the caller are taken as they are, unless ``media_dir`` or
            ``media_roots`` is set (their images are checked to decode either way).
        output: the rollout records file (JSONL keyed by question id).
        backend: a :class:`mede2_plugin.client.BackendConfig` for M1.
        config: rollout settings.
    """
    from mede2_plugin.client import ChatRequest, run_batch

    config = config or RolloutConfig()
    if isinstance(questions, (str, Path)):
        if config.media_dir is None:
            config = dataclasses.replace(config, media_dir=str(Path(questions).resolve().parent))
        questions = read_questions(questions)
    elif config.media_dir is None and not config.media_roots:
        config = dataclasses.replace(config, allow_outside_media=True)
    summary = RolloutSummary(output=str(output))
    results_path = results_path_for(output)
    with JsonlStore(output) as store:
        pending: dict[str, dict[str, Any]] = {}
        requests = []
        for question in questions:
            summary.questions += 1
            done = store.get(question.id)
            if done is not None and done.get("status") in (OK, REJECTED):
                summary.already_done += 1
                continue
            record, messages = build_record(question, config)
            if messages is None:
                store.append(record)
                summary.rejected += 1
                continue
            pending[question.id] = record
            requests.append(ChatRequest(
                id=question.id, messages=messages, n=config.num_candidates, temperature=config.temperature,
                top_p=config.top_p, max_tokens=config.max_tokens, seed=config.seed,
            ))
        if requests:
            batch = run_batch(requests, output=str(results_path), config=backend, stage="rollout")
            summary.batch = batch.to_dict()
            results = batch.rows
        else:
            results = {}
        for question_id, record in pending.items():
            row = results.get(question_id)
            if row is None:
                record.update(status=FAILED, reason="no result from the backend (budget exhausted or interrupted)")
            elif row.get("error"):
                record.update(status=FAILED, reason=f"backend error: {row['error']}")
            else:
                record.update(
                    candidates=[
                        {"index": i, "text": full_text(s), "reasoning": s.get("reasoning"),
                         "finish_reason": s.get("finish_reason")}
                        for i, s in enumerate(row.get("samples") or [])
                    ],
                    usage=row.get("usage") or record["usage"], cost_usd=row.get("cost_usd"),
                    backend=row.get("backend"), model=row.get("model"),
                )
                if not record["candidates"]:
                    record.update(status=FAILED, reason="the backend returned no samples")
            store.append(record)
            if record["status"] == OK:
                summary.ok += 1
                summary.caption_stripped += record["text_from"] != "question"
                summary.candidates += len(record["candidates"])
            else:
                summary.failed += 1
    return summary
