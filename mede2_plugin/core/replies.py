"""Reading a model's reply: the part meant as the answer, a JSON value in it, a Yes/No field.

Every stage reads replies through these helpers (and option letters through
:func:`mede2_plugin.core.answers.extract_choice`), so one reply shape is read the same way everywhere.
The client layer stores each sample as ``{"text", "reasoning", "finish_reason"(, "parsed")}``:

* ``reasoning`` holds reasoning a provider returns apart from the text: ``reasoning_content`` /
  ``reasoning`` (DeepSeek's API, vLLM with a reasoning parser) and Gemini thought parts
  (``thought: true``, when thoughts are included);
* ``text`` may still carry its reasoning: ``<think>...</think>`` before the answer (Qwen3, QwQ,
  vLLM without a reasoning parser), with the opening tag missing when the chat template opened it
  in the prompt (DeepSeek-R1 distills), or a stray ``</think>`` left by a reasoning parser.

:func:`~mede2_plugin.core.answers.visible_text` is the text after that reasoning. :func:`parse_json` finds the JSON value
of a reply in any of these shapes: bare JSON; in a ```` ```json ```` (or bare ```` ``` ````)
fence; with prose before or after it; after a think block (whose own braces are ignored).
JSON in fences wins over objects in the prose around them; two different JSON objects are
ambiguous and give None.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from mede2_plugin.core.answers import THINK_CLOSE, visible_text

FENCE = re.compile(r"```[ \t]*(?:json5?|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)
YES_WORDS = frozenset({"yes", "y", "true", "1", "pass"})
NO_WORDS = frozenset({"no", "n", "false", "0", "fail"})


def full_text(sample: dict[str, Any]) -> str:
    """The whole output of a sample: reasoning a server returned apart (``reasoning``) put back in
    ``<think>`` tags before the text, as the model wrote it; the text alone when it has its own
    ``</think>`` or there is no separate reasoning. With no text at all the think block stays open:
    a reasoning parser sends everything as reasoning when the model never closed it (cut off)."""
    text = sample.get("text") or ""
    reasoning = sample.get("reasoning") or ""
    if not reasoning.strip() or THINK_CLOSE.search(text):
        return text
    return f"<think>{reasoning}</think>{text}" if text.strip() else f"<think>{reasoning}"


def _json_objects(text: str, hook: Callable | None) -> list[Any]:
    """Every top-level JSON object in free text, in order."""
    decoder = json.JSONDecoder(object_pairs_hook=hook)
    found, pos = [], text.find("{")
    while pos >= 0:
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            pos = text.find("{", pos + 1)
            continue
        found.append(value)
        pos = text.find("{", end)
    return found


def parse_json(text: str | None, object_pairs_hook: Callable | None = None) -> Any:
    """The one JSON value of a reply (see the module doc), or None when there is none, the
    reply was cut off while thinking, or it holds several different JSON objects.

    ``object_pairs_hook`` is passed to the decoder (e.g. to reject duplicated keys); what it
    raises propagates.
    """
    body = (visible_text(text) or "").strip()
    if not body:
        return None
    loads = json.JSONDecoder(object_pairs_hook=object_pairs_hook).decode
    try:
        return loads(body)
    except json.JSONDecodeError:
        pass
    values = []
    for block in FENCE.findall(body):
        try:
            values.append(loads(block.strip()))
        except json.JSONDecodeError:
            continue
    if not values:
        values = _json_objects(body, object_pairs_hook)
    distinct = {json.dumps(v, sort_keys=True): v for v in values}
    return next(iter(distinct.values())) if len(distinct) == 1 else None


def sample_json(sample: dict[str, Any]) -> Any:
    """The JSON value of a client sample: the backend's ``parsed`` value, else :func:`parse_json`
    of its text."""
    if sample.get("parsed") is not None:
        return sample["parsed"]
    return parse_json(sample.get("text"))


def yes_no(value: Any) -> bool | None:
    """True / False for a Yes/No field (``"Yes"``, ``"yes "``, ``true``, ``"No."``, ``false``,
    ``1``/``0``, ``"pass"``/``"fail"``); None for anything else (``"Yes/No"``, ``"Partially"``)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return {1: True, 0: False}.get(value)
    if not isinstance(value, str):
        return None
    word = value.strip().rstrip(".!").strip().casefold()
    if word in YES_WORDS:
        return True
    if word in NO_WORDS:
        return False
    return None
