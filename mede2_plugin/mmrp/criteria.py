"""The five MMRP criteria, the judge's JSON response schema, and verdict parsing.

A verdict is the one JSON object of the judge's reply, found by the shared reader
:func:`mede2_plugin.core.replies.parse_json`, holding each of the five fields exactly once with a
Yes/No value read by :func:`mede2_plugin.core.replies.yes_no`. Reply shapes accepted (judges: Gemini
2.5 with or without thoughts and a response schema, GPT-4o / o-series, open models on vLLM):

* bare JSON, or JSON in a ```` ```json ```` fence (Gemini without a schema, GPT-4o);
* JSON with prose before or after it ("Here is my evaluation: ...");
* JSON after a ``<think>...</think>`` block, or after a bare ``</think>`` (reasoning models served
  without a reasoning parser); Gemini thoughts and ``reasoning_content`` never reach the text;
* field values ``"Yes"``, ``"yes"``, ``" NO "``, ``"No."``, ``true`` / ``false``.

Anything else raises :class:`VerdictError` and the judge stage asks again: no JSON object, two
different objects, a missing field, ``"Yes/No"``, ``"Partially"``, a duplicated key.
"""

from __future__ import annotations

import json
from typing import Any

from mede2_plugin.core.replies import parse_json, yes_no

#: The paper's five criteria (Appendix A), in its order; the JSON field names of a verdict.
CRITERIA: tuple[str, ...] = (
    "Answer_Correctness",
    "Logical_Consistency",
    "Image_Analysis_Involvement",
    "No_Hallucination",
    "Reflection_Presence",
)
ANSWER_CORRECTNESS = CRITERIA[0]

YES, NO, UNRATED = "Yes", "No", ""

#: JSON schema sent as ``ChatRequest.response_schema`` (Gemini ``response_schema``, OpenAI
#: ``response_format`` of type ``json_schema``).
VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {name: {"type": "string", "enum": [YES, NO]} for name in CRITERIA},
    "required": list(CRITERIA),
}


class VerdictError(ValueError):
    """A judge reply that is not a valid five-field Yes/No verdict."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise VerdictError(f"field {key!r} appears twice")
        seen[key] = value
    return seen


def parse_verdict(text: str | None) -> dict[str, str]:
    """Parse a judge reply into ``{criterion: "Yes" | "No"}`` for all five criteria (module doc).

    Extra fields besides the five are ignored. Raises :class:`VerdictError` saying what is wrong.
    """
    if text is None or not text.strip():
        raise VerdictError("empty reply")
    data = parse_json(text, object_pairs_hook=_no_duplicates)
    if data is None:
        raise VerdictError("not a JSON object (none, or several different ones, in the reply)")
    if not isinstance(data, dict):
        raise VerdictError(f"expected a JSON object, got {type(data).__name__}")
    missing = [name for name in CRITERIA if name not in data]
    if missing:
        raise VerdictError(f"missing field(s) {', '.join(missing)}")
    verdict: dict[str, str] = {}
    for name in CRITERIA:
        value = yes_no(data[name])
        if value is None:
            raise VerdictError(f"field {name!r} must be \"Yes\" or \"No\", got {json.dumps(data[name])[:40]}")
        verdict[name] = YES if value else NO
    return verdict


def empty_verdict() -> dict[str, str]:
    """A verdict with no criterion rated (the stored form of "not judged")."""
    return {name: UNRATED for name in CRITERIA}


def failed_criteria(verdict: dict[str, str], criteria: tuple[str, ...] | list[str] = CRITERIA) -> list[str]:
    """The criteria among ``criteria`` rated ``"No"``."""
    return [name for name in criteria if verdict.get(name) == NO]


def classify(verdict: dict[str, str], criteria: tuple[str, ...] | list[str] = CRITERIA) -> str:
    """``positive`` (every criterion Yes), ``negative`` (any No) or ``unjudged`` (else)."""
    values = [verdict.get(name, UNRATED) for name in criteria]
    if any(value == NO for value in values):
        return "negative"
    if all(value == YES for value in values):
        return "positive"
    return "unjudged"


def is_hard_negative(verdict: dict[str, str], criteria: tuple[str, ...] | list[str] = CRITERIA) -> bool:
    """Right answer (criterion 1 Yes) but another required criterion No."""
    return verdict.get(ANSWER_CORRECTNESS) == YES and any(
        verdict.get(name) == NO for name in criteria if name != ANSWER_CORRECTNESS
    )
