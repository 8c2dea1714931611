"""Reading a teacher's reply: where its reasoning is, and what its final answer is.

* ``reasoning_content``: the server returns the reasoning in a separate field (DeepSeek's API,
  vLLM with a reasoning parser); the client's sample ``reasoning`` holds it, the text is the answer.
* ``think_tags``: ``<think>reasoning</think>final`` in the text (an opening tag may be missing, as
  when a chat template opens it in the prompt). An opened ``<think>`` that is never closed is a
  truncated reply.
* ``summary``: no reasoning at all (o1): the text is a summary; with ``expand_summary`` the
  teacher is asked to expand it (:func:`expansion_messages`) and the expansion is the reasoning.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

THINK = re.compile(r"^\s*(?:<think>)?(.*?)</think>(.*)$", re.DOTALL | re.IGNORECASE)
THINK_OPEN = re.compile(r"^\s*<think>(.*)$", re.DOTALL | re.IGNORECASE)

SOURCE_FIELD, SOURCE_TAGS, SOURCE_SUMMARY, SOURCE_EXPANDED, SOURCE_NONE = (
    "reasoning_content", "think_tags", "summary", "expanded", "none")


@dataclass
class ParsedReply:
    """A teacher reply split into reasoning and final answer.

    Attributes:
        reasoning: the reasoning text, None when the reply has none.
        final: the final answer text (should hold ``\\boxed{}``).
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
    """``(reasoning, final)`` of a ``<think>..</think>final`` text; None without a ``</think>``."""
    match = THINK.match(text or "")
    if not match:
        return None
    return match.group(1).strip(), match.group(2).strip()


def parse_reply(sample: dict[str, Any], mode: str = "auto") -> ParsedReply:
    """Split one teacher sample (``text``, ``reasoning``) according to the teacher's mode."""
    text = sample.get("text") or ""
    field = (sample.get("reasoning") or "").strip()
    if mode in ("auto", "reasoning_content") and field:
        split = split_think(text)  # some servers also leave a closing tag in the text
        return ParsedReply(field, split[1] if split else text.strip(), SOURCE_FIELD)
    if mode in ("auto", "think_tags"):
        split = split_think(text)
        if split is not None:
            return ParsedReply(split[0] or None, split[1], SOURCE_TAGS)
        opened = THINK_OPEN.match(text)
        if opened:
            return ParsedReply(opened.group(1).strip() or None, "", SOURCE_TAGS, unclosed_think=True)
    if mode in ("auto", "summary"):
        return ParsedReply(None, text.strip(), SOURCE_SUMMARY)
    return ParsedReply(None, text.strip(), SOURCE_NONE)


def expansion_text(sample: dict[str, Any]) -> str:
    """The reasoning of an expansion reply: its think block if it has one, else its whole text.

    A trailing final-answer line that the expansion may repeat is kept; the trace's answer is the
    original summary's.
    """
    text = (sample.get("text") or "").strip()
    split = split_think(text)
    if split is not None and split[0]:
        return split[0]
    return text
