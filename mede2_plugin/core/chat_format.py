"""The paper's think/answer conversation (Appendix A), built once for every stage.

Training data, rollouts, evaluation prompts and the served chat template all go through these
functions, so the text a model is trained on is the text it is later asked.
"""

from __future__ import annotations

from typing import Any

from mede2_plugin.core.media import IMAGE_PLACEHOLDER, MediaPolicy, image_part
from mede2_plugin.core.prompts import render
from mede2_plugin.core.questions import Question

__all__ = ["IMAGE_PLACEHOLDER", "assistant_response", "boxed", "image_part", "llamafactory_prompt", "openai_messages",
           "question_images", "question_messages", "system_prompt", "user_prompt"]


def system_prompt() -> str:
    return render("prompts/system.j2").strip()


def user_prompt(record: Question | None = None, **fields: Any) -> str:
    """The user turn: patient information, the question, its options, and the boxed instruction.

    Give a :class:`Question`, or the fields ``question``, ``options`` and ``patient_info``.
    """
    if record is not None:
        fields = {"patient_info": record.patient_info, "question": record.question,
                  "options": record.options, **fields}
    fields.setdefault("patient_info", "")
    fields.setdefault("options", {})
    return render("prompts/question.j2", **fields)


def assistant_response(reasoning: str, final: str) -> str:
    """``<think>reasoning</think><answer>final</answer>``; ``final`` should hold ``\\boxed{X}``."""
    return render("prompts/assistant.j2", reasoning=reasoning, final=final)


def boxed(letter: str) -> str:
    return "\\boxed{" + letter + "}"


def llamafactory_prompt(question: Question) -> list[dict[str, str]]:
    """User turn in LLaMA-Factory's form: one ``<image>`` per image, all before the text.

    Images go first because that is where an OpenAI-style message with image parts before the
    text puts them under the served chat template, so training and serving see the same prompt.
    """
    return [{"role": "user", "content": IMAGE_PLACEHOLDER * len(question.images) + user_prompt(question)}]


def question_images(question: Question, media: MediaPolicy | None = None) -> list[str]:
    """The question's images as they are read: each through ``media`` (containment, decoding;
    relative paths under its data folder), or unchanged without a policy."""
    return media.check_all(question.images) if media is not None else list(question.images)


def openai_messages(question: Question, media: MediaPolicy | None = None,
                    embed_images: bool = True) -> list[dict[str, Any]]:
    """System plus user turn as OpenAI chat messages, image parts before the text part."""
    user: str | list[dict[str, Any]] = user_prompt(question)
    if question.images:
        parts = [image_part(p, embed_images) for p in question_images(question, media)]
        user = parts + [{"type": "text", "text": user}]
    return [{"role": "system", "content": system_prompt()}, {"role": "user", "content": user}]


def question_messages(question: Question, template: str, system_template: str | None = None,
                      paper_system: bool = False, media: MediaPolicy | None = None,
                      send_images: bool = True, embed_images: bool = True,
                      **variables: Any) -> list[dict[str, Any]]:
    """OpenAI-style messages for one question: optional system turn, then images and the prompt.

    Args:
        question: the question (its fields are template variables, plus ``question_record``).
        template: the user-turn template, e.g. ``prompts/curate_solver.j2``.
        system_template: a system-turn template; None for no system turn (unless ``paper_system``).
        paper_system: use the paper's Appendix-A system prompt as the system turn.
        media: where the question's images may come from (see :func:`question_images`).
        send_images: attach the question's images (image parts before the text).
        embed_images: local images as data URLs (else file URIs).
        **variables: extra template variables.
    """
    text = render(template, question=question.question, options=question.options,
                  patient_info=question.patient_info, answer=question.answer,
                  n_images=len(question.images), question_record=question, **variables).strip()
    content: str | list[dict[str, Any]] = text
    if send_images and question.images:
        content = [image_part(p, embed_images) for p in question_images(question, media)]
        content.append({"type": "text", "text": text})
    messages: list[dict[str, Any]] = []
    if system_template:
        messages.append({"role": "system", "content": render(system_template).strip()})
    elif paper_system:
        messages.append({"role": "system", "content": system_prompt()})
    messages.append({"role": "user", "content": content})
    return messages
