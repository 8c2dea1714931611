"""The funnel of a run: for every stage step, how many items entered, were kept and were dropped
(by reason), with the items behind each number.

Sources (whatever the folder holds): step reports (``report.json`` with ``steps``: curation banks,
distillation; items from ``<step>/records.jsonl`` or ``load/rejected.jsonl``), rollouts (one row
per question, ``status`` and ``reason``), judged candidates (``status`` and ``reason`` per
candidate) and pair reports (questions with pairs, without a positive / negative, flagged pairs).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mede2_plugin.core.jsonl import read_jsonl
from mede2_plugin.review.run import RunFiles


@dataclass
class FunnelRow:
    """One step of the funnel and the items behind it (``id``, ``kept``, ``reason``)."""

    stage: str
    step: str
    entered: int
    kept: int
    dropped: dict[str, int]
    items: list[dict[str, Any]] = field(default_factory=list)
    kind: str = ""  # "rewrite" / "pair": the review view the items open in

    @property
    def key(self) -> str:
        return f"{self.stage} / {self.step}"

    def table_row(self) -> list[Any]:
        reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(self.dropped.items())) or "-"
        return [self.stage, self.step, self.entered, self.kept, sum(self.dropped.values()), reasons]


HEADERS = ["stage", "step", "entered", "kept", "dropped", "dropped by reason"]


def _rows(path: Path) -> list[dict[str, Any]]:
    return list(read_jsonl(path, allow_torn_tail=True)) if path.is_file() else []


def _step_items(folder: Path, step: str) -> list[dict[str, Any]]:
    items = [{"id": str(r.get("id")), "kept": bool(r.get("kept")), "reason": str(r.get("reason") or "")}
             for r in _rows(folder / step / "records.jsonl")]
    if not items:  # a step without decision records (load): its kept questions
        items = [{"id": str(r.get("id")), "kept": True, "reason": "kept"} for r in _rows(folder / step / "kept.jsonl")]
    if step == "load":
        items += [{"id": r.get("id") or f"{r.get('file', '')}: {r.get('record', '')}", "kept": False,
                   "reason": str(r.get("reason") or "")}
                  for r in _rows(folder / "load" / "rejected.jsonl")]
    return items


def step_report_rows(files: RunFiles, report_path: Path) -> list[FunnelRow]:
    report = json.loads(report_path.read_text(encoding="utf-8"))
    stage = files.label(report_path.parent)
    out = []
    for step, data in report["steps"].items():
        if not isinstance(data, dict) or "input" not in data:
            continue
        out.append(FunnelRow(stage, step, int(data["input"]), int(data.get("kept", 0)), dict(data.get("dropped") or {}),
                             _step_items(report_path.parent, step), "rewrite" if step == "strip" else ""))
    return out


def rollout_row(files: RunFiles, path: Path) -> FunnelRow:
    rows = _rows(path)
    items = [{"id": str(r.get("id")), "kept": r.get("status") == "ok",
              "reason": str(r.get("status") if r.get("status") == "ok" else f"{r.get('status')}: {r.get('reason')}")}
             for r in rows]
    dropped = Counter(i["reason"] for i in items if not i["kept"])
    return FunnelRow(files.label(path.parent), "rollout", len(items), sum(i["kept"] for i in items), dict(dropped), items)


PRESCREEN = {"wrong": "pre-screen: wrong answer", "unparsed": "pre-screen: no answer found"}


def judged_row(files: RunFiles, path: Path) -> FunnelRow:
    """Candidates in, positives kept; dropped counted by pre-screen outcome or the judge's failed criteria."""
    latest = {str(r["id"]): r for r in _rows(path) if "id" in r}
    items, dropped = [], Counter()
    for row in latest.values():
        for candidate in row.get("candidates") or []:
            status = candidate.get("status")
            reason = "positive" if status == "positive" else str(candidate.get("reason") or status)
            items.append({"id": f"{row['id']}#c{candidate.get('index')}", "kept": status == "positive", "reason": reason})
            if status != "positive":
                dropped[PRESCREEN.get(candidate.get("prescreen"), reason)] += 1
    return FunnelRow(files.label(path.parent), "judge (candidates)", len(items), sum(i["kept"] for i in items),
                     dict(dropped), items)


def pairs_row(files: RunFiles, path: Path) -> FunnelRow:
    report = json.loads(path.read_text(encoding="utf-8"))
    lists = {"no positive": report.get("questions_without_positive") or [],
             "no negative": report.get("questions_without_negative") or [],
             "nothing judged": report.get("questions_without_judged") or []}
    left_out = {q for ids in lists.values() for q in ids}
    native = path.with_name(path.name[: -len("_pairs_report.json")] + ".jsonl")
    pairs = _rows(native)
    items = [{"id": str(p.get("id")), "kept": True, "reason": "pair"} for p in pairs]
    items += [{"id": q, "kept": False, "reason": reason} for reason, ids in lists.items() for q in ids]
    items += [{"id": p, "kept": False, "reason": "flagged by a reviewer"} for p in report.get("flagged_dropped") or []]
    dropped = {reason: len(ids) for reason, ids in lists.items() if ids}
    if report.get("flagged_dropped"):
        dropped["flagged pairs"] = len(report["flagged_dropped"])
    questions = int(report.get("questions", 0))
    return FunnelRow(files.label(path.parent), f"pairs ({report.get('pairs', len(pairs))} pairs)", questions,
                     questions - len(left_out), dropped, items, "pair")


def funnel(files: RunFiles) -> list[FunnelRow]:
    """Every step found in the folder, in pipeline order."""
    rows: list[FunnelRow] = []
    for report in files.step_reports:
        rows += step_report_rows(files, report)
    rows += [rollout_row(files, p) for p in files.rollouts]
    rows += [judged_row(files, p) for p in files.judged]
    rows += [pairs_row(files, p) for p in files.pair_reports]
    return rows
