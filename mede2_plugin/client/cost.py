"""Prices, token costs and the optional budget cap.

Prices are USD per million tokens, ``{"input": x, "output": y}``, looked up by model name:
the exact name first, then the longest configured name of which it is a dated or preview snapshot
(``gemini-2.5-pro-preview-06-05`` and ``gpt-4o-2024-08-06`` use ``gemini-2.5-pro`` and ``gpt-4o``).
Another model whose name merely starts the same (``o3-mini``, ``gpt-4.1-mini``,
``gemini-2.5-flash-lite``) is not a snapshot: without its own entry it has cost ``None``, shown as
"unknown"; nothing is guessed. The built-in table is a convenience with list prices as published
in mid-2025 (standard tier, short prompts); set ``prices`` in the backend config to override or
extend it.

Batch prices: an entry may hold ``"batch": {"input": x, "output": y}``, the price of the same
tokens sent through the provider's batch API (``mode: batch``; OpenAI's Batch API and Gemini's
batch mode both bill half the interactive price). A model without a batch entry has an unknown
batch cost. A configured entry replaces the built-in one whole, its batch price included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

DEFAULT_PRICES: dict[str, dict[str, Any]] = {
    "gemini-2.5-pro": {"input": 1.25, "output": 10.0, "batch": {"input": 0.625, "output": 5.0}},
    "gemini-2.5-flash": {"input": 0.30, "output": 2.50, "batch": {"input": 0.15, "output": 1.25}},
    "gpt-4o": {"input": 2.50, "output": 10.0, "batch": {"input": 1.25, "output": 5.0}},
    "gpt-4o-mini": {"input": 0.15, "output": 0.60, "batch": {"input": 0.075, "output": 0.30}},
    "gpt-4.1": {"input": 2.0, "output": 8.0, "batch": {"input": 1.0, "output": 4.0}},
    "o3": {"input": 2.0, "output": 8.0, "batch": {"input": 1.0, "output": 4.0}},
    "o1": {"input": 15.0, "output": 60.0, "batch": {"input": 7.5, "output": 30.0}},  # a paper teacher
    "o1-mini": {"input": 1.10, "output": 4.40, "batch": {"input": 0.55, "output": 2.20}},
    "o3-mini": {"input": 1.10, "output": 4.40, "batch": {"input": 0.55, "output": 2.20}},
    "o4-mini": {"input": 1.10, "output": 4.40, "batch": {"input": 0.55, "output": 2.20}},
    "gpt-4.1-mini": {"input": 0.40, "output": 1.60, "batch": {"input": 0.20, "output": 0.80}},
    "gemini-2.5-flash-lite": {"input": 0.10, "output": 0.40, "batch": {"input": 0.05, "output": 0.20}},
    "deepseek-reasoner": {"input": 0.55, "output": 2.19},  # no batch API
}
PRICE_MODES = ("interactive", "batch")


def price_for(model: str, prices: dict[str, dict[str, Any]] | None = None,
              use_defaults: bool = True, mode: str = "interactive") -> dict[str, float] | None:
    """The ``{"input", "output"}`` price of ``model`` in ``mode`` (``interactive`` or ``batch``),
    configured prices before the built-in table; None when unknown."""
    if mode not in PRICE_MODES:
        raise ValueError(f"price mode must be one of {', '.join(PRICE_MODES)}, got {mode!r}")
    table = dict(DEFAULT_PRICES) if use_defaults else {}
    table.update(prices or {})
    key = _table_key(model, table)
    if key is None:
        return None
    entry = _checked(key, table[key])
    if mode == "interactive":
        return entry
    batch = table[key].get("batch")
    return None if batch is None else _checked(f"{key} (batch)", batch)


def _table_key(model: str, table: dict[str, Any]) -> str | None:
    if model in table:
        return model
    name = model.rsplit("/", 1)[-1]  # "models/gemini-2.5-pro", "org/model"
    if name in table:
        return name
    matches = [key for key in table if name.startswith(key) and _SNAPSHOT_SUFFIX.match(name[len(key):])]
    return max(matches, key=len) if matches else None


# What may follow a priced name in one of its snapshots: a date or version ("-2024-08-06",
# "-0125", "@001") or a release tag ("-preview-06-05", "-latest", "-exp-03-25").
_SNAPSHOT_SUFFIX = re.compile(r"(?:[-@](?:\d|preview|latest|exp)|$)")


def _checked(model: str, entry: dict[str, Any]) -> dict[str, float]:
    if not isinstance(entry, dict) or not {"input", "output"} <= set(entry):
        raise ValueError(f"price of {model!r} must be {{'input': usd_per_mtok, 'output': usd_per_mtok}}, got {entry!r}")
    return {"input": float(entry["input"]), "output": float(entry["output"])}


def call_cost(prompt_tokens: int, completion_tokens: int, price: dict[str, float] | None) -> float | None:
    """USD for one call, or None when the price is unknown."""
    if price is None:
        return None
    return (prompt_tokens * price["input"] + completion_tokens * price["output"]) / 1_000_000


def format_usd(value: float | None) -> str:
    return "unknown" if value is None else f"${value:.4f}"


@dataclass
class Budget:
    """Spend of one run against an optional cap.

    New requests start only while ``spent + in_flight * average_call_cost < cap``, so the cap is
    overshot by at most the calls already in flight when it is reached.
    """

    cap_usd: float | None = None
    spent_usd: float = 0.0
    priced_calls: int = 0
    in_flight: int = 0
    exhausted: bool = False

    def add(self, cost: float | None) -> None:
        if cost is not None:
            self.spent_usd += cost
            self.priced_calls += 1

    def may_start(self) -> bool:
        """Whether one more request may start; flips ``exhausted`` once the cap is reached."""
        if self.cap_usd is None:
            return True
        average = self.spent_usd / self.priced_calls if self.priced_calls else 0.0
        if self.spent_usd + self.in_flight * average >= self.cap_usd:
            self.exhausted = True
        return not self.exhausted
