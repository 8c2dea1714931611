"""The paper's think/answer conversation (Appendix A), built once for every stage.

Training data, rollouts, evaluation prompts and the served chat template all go through these
functions, so the text a model is trained on is the text it is later asked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mede2_plugin.prompts import render
from mede2_plugin.questions import Question

IMAGE_PLACEHOLDER = "<image>"  # LLaMA-Factory's placeholder, expanded by its mm_plugin


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


def image_part(image: str, embed: bool = True) -> dict[str, Any]:
    """An OpenAI ``image_url`` content part for a path or URL; local files become data URLs."""
    if embed:
        from mede2_plugin.client.images import to_data_url

        url = to_data_url(image)
    else:
        url = image if "://" in image or image.startswith("data:") else Path(image).resolve().as_uri()
    return {"type": "image_url", "image_url": {"url": url}}


def openai_messages(question: Question, media_dir: str | Path | None = None,
                    embed_images: bool = True) -> list[dict[str, Any]]:
    """System plus user turn as OpenAI chat messages, image parts before the text part."""
    user: str | list[dict[str, Any]] = user_prompt(question)
    if question.images:
        paths = [str(Path(media_dir) / p) if media_dir and not Path(p).is_absolute() else p
                 for p in question.images]
        user = [image_part(p, embed_images) for p in paths] + [{"type": "text", "text": user}]
    return [{"role": "system", "content": system_prompt()}, {"role": "user", "content": user}]
