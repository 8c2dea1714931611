"""Reading a teacher's reply: where its reasoning is, and what its final answer is.

The Stage-I target is ``<think>reasoning</think><answer>final</answer>`` (built once, by
:func:`mede2_plugin.core.chat_format.assistant_response`), so :func:`parse_reply` returns the bare
reasoning and the bare final answer, whatever wrapping the teacher used. Replies as providers
return them (the client stores ``text`` and, apart, ``reasoning``):

=========================================================  ==========================================
reply                                                      reasoning / final
=========================================================  ==========================================
``reasoning_content`` + plain content (DeepSeek's API,     the field / the content
vLLM with a reasoning parser; Gemini thought parts)
the same with content ``<answer>...</answer>``, or with    the field / the answer block's content
a stray ``</think>`` before it
``<think>R</think>final`` (Qwen3, QwQ)                     R / final
``<think>R</think><answer>final</answer>`` (the paper's    R / final
own format, asked with ``paper_system: true``)
``R</think>...`` (R1 distills: the chat template opened    R / as above
``<think>`` in the prompt)
``<think>R`` never closed                                  R / ``""``, ``unclosed_think`` (truncated)
no reasoning (o1): a summary, with or without ``<answer>``  None / the summary's answer; with
                                                           ``expand_summary`` the expansion is R
=========================================================  ==========================================

The final answer is the text after the reasoning; when it holds exactly one
``<answer>...</answer>`` block, the block's content (text around the block is dropped: the shared
extractor reads the letter from the block too). Answer parts that cannot be normalised, several
or nested ``<answer>`` blocks or one never closed, are kept as they are, so the trace filter
drops the trace as ``bad_structure`` or ``truncated``. Which letter the final answer names (``\\boxed{B}``,
``\\boxed{B. text}``, ``\\boxed{\\text{B}}``, the option text) is
:func:`mede2_plugin.core.answers.extract_choice`'s to say.

Modes (``TeacherConfig.reasoning``): ``auto`` takes the field, else the think tags, else treats
the reply as a summary; ``reasoning_content`` and ``think_tags`` take the field or the tags and
give source ``none`` when the reply has neither (the trace fails ``no_reasoning``); ``summary``
ignores any reasoning the reply carries (the expansion will be the reasoning).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from mede2_plugin.core.answers import ANSWER_CLOSE, ANSWER_OPEN, THINK_CLOSE, THINK_OPEN

THINK = re.compile(r"^\s*(?:<think>)?(.*?)</think>(.*)$", re.DOTALL | re.IGNORECASE)
ONE_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)

SOURCE_FIELD, SOURCE_TAGS, SOURCE_SUMMARY, SOURCE_EXPANDED, SOURCE_NONE = (
    "reasoning_content", "think_tags", "summary", "expanded", "none")


@dataclass
class ParsedReply:
    """A teacher reply split into reasoning and final answer.

    Attributes:
        reasoning: the reasoning text, None when the reply has none.
        final: the final answer text (should hold ``\\boxed{}``), without ``<answer>`` tags.
        source: ``reasoning_content``, ``think_tags``, ``summary`` or ``none`` (the mode expected
            reasoning that is not there).
        unclosed_think: a ``<think>`` was opened and never closed (truncated).
    """

    reasoning: str | None
    final: str
    source: str
    unclosed_think: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_think(text: str) -> tuple[str, str] | None:
    """``(reasoning, rest)`` of a ``<think>..</think>rest`` text (the opening tag may be missing);
    None without a ``</think>``."""
    match = THINK.match(text or "")
    if not match:
        return None
    return match.group(1).strip(), match.group(2).strip()


def answer_part(text: str) -> str:
    """The final answer of the text after the reasoning: the content of its one ``<answer>`` block,
    or the text itself when it has no ``<answer>`` tags or cannot be normalised (see module doc)."""
    text = text.strip()
    opens, closes = len(ANSWER_OPEN.findall(text)), len(ANSWER_CLOSE.findall(text))
    if opens == closes == 1:
        block = ONE_ANSWER.search(text)
        if block is not None:
            return block.group(1).strip()
    return text


def _field(sample: dict[str, Any]) -> str:
    """The separate reasoning, without think tags a server may have left around it."""
    field = (sample.get("reasoning") or "").strip()
    split = split_think(field)
    if split is not None and not split[1]:
        field = split[0]
    return THINK_OPEN.sub("", field, count=1).strip() if THINK_OPEN.match(field) else field


def parse_reply(sample: dict[str, Any], mode: str = "auto") -> ParsedReply:
    """Split one teacher sample (``text``, ``reasoning``) according to the teacher's mode."""
    text = sample.get("text") or ""
    unclosed = len(THINK_OPEN.findall(text)) > len(THINK_CLOSE.findall(text))
    split = split_think(text)
    rest = split[1] if split is not None else text
    if mode == "summary":
        return ParsedReply(None, answer_part(rest), SOURCE_SUMMARY)
    field = _field(sample)
    if field:
        return ParsedReply(field, answer_part(rest), SOURCE_FIELD, unclosed_think=unclosed)
    if split is not None:
        return ParsedReply(split[0] or None, answer_part(rest), SOURCE_TAGS)
    opened = re.match(r"^\s*<think>(.*)$", text, re.DOTALL | re.IGNORECASE)
    if opened:
        return ParsedReply(opened.group(1).strip() or None, "", SOURCE_TAGS, unclosed_think=True)
    source = SOURCE_SUMMARY if mode == "auto" else SOURCE_NONE
    return ParsedReply(None, answer_part(text), source)


def expansion_text(sample: dict[str, Any]) -> str:
    """The reasoning of an expansion reply: its think block if it has one, else its text without
    a final ``<answer>`` block, else (an empty text) the separate reasoning.

    A trailing final-answer line that the expansion may repeat is kept; the trace's answer is the
    original summary's.
    """
    text = (sample.get("text") or "").strip()
    split = split_think(text)
    if split is not None and split[0]:
        return split[0]
    if split is not None:
        text = split[1]
    block = list(ONE_ANSWER.finditer(text))
    if block and not text[block[-1].end():].strip():
        text = text[:block[-1].start()].strip()
    return text or _field(sample)
