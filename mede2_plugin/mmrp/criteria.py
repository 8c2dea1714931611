"""The five MMRP criteria, the judge's JSON response schema, and strict verdict parsing.

A verdict is valid only when the judge's text is one JSON object (optionally inside a single
```json fence) holding each of the five fields exactly once with the value ``"Yes"`` or ``"No"``
(case and surrounding spaces ignored). Anything else — prose around the JSON, a missing field,
``"Yes/No"``, ``"Partially"``, ``true``, a duplicated key — raises :class:`VerdictError`, and
the judge stage retries the call.
"""

from __future__ import annotations

import json
import re
from typing import Any

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

_FENCE = re.compile(r"\A```(?:json|JSON)?[ \t]*\n(.*)\n[ \t]*```\Z", re.DOTALL)


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
    """Parse a judge reply into ``{criterion: "Yes" | "No"}`` for all five criteria, strictly.

    Extra fields besides the five are ignored. Raises :class:`VerdictError` saying what is wrong.
    """
    if text is None or not text.strip():
        raise VerdictError("empty reply")
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    try:
        data = json.loads(body, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as err:
        raise VerdictError(f"not a JSON object ({err.msg} at char {err.pos})") from None
    if not isinstance(data, dict):
        raise VerdictError(f"expected a JSON object, got {type(data).__name__}")
    missing = [name for name in CRITERIA if name not in data]
    if missing:
        raise VerdictError(f"missing field(s) {', '.join(missing)}")
    verdict: dict[str, str] = {}
    for name in CRITERIA:
        value = data[name]
        normalized = value.strip().capitalize() if isinstance(value, str) else None
        if normalized not in (YES, NO):
            raise VerdictError(f"field {name!r} must be \"Yes\" or \"No\", got {json.dumps(value)[:40]}")
        verdict[name] = normalized
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
