"""What every step of every stage reports, and the decision files it writes.

A step reads items, makes its model calls (resumable), derives one decision record per item from
the stored replies, and writes:

* ``records.jsonl``: every item with ``kept``, ``reason`` and the evidence (never dropped);
* ``kept.jsonl``: the question file of the kept questions, the next step's input;
* ``report.json``: a :class:`StepReport` (counts in and out, drop reasons, call summaries).

Decision files are rewritten atomically on every run (they are a pure function of the stored
replies and the settings, so they can be re-thresholded without new calls); the replies
themselves live in the append-only results files of ``run_batch``. A results file is keyed by
item id only: after changing a prompt template or a model, delete that step's
``*.results.jsonl`` to ask again (the reports record each prompt template's hash, so a change is
visible; the response cache still answers unchanged requests for free).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mede2_plugin.core.files import atomic_write_json, read_json
from mede2_plugin.core.jsonl import write_jsonl
from mede2_plugin.core.questions import Question, write_questions

KEPT = "kept"
PENDING_PREFIX = "pending"  # reasons starting with this: not decided yet (a failed or missing call)


def slug(text: str) -> str:
    """A file-name-safe label (``gemini-2.5-pro`` stays, ``Qwen/QwQ-32B`` -> ``Qwen_QwQ-32B``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def row_samples(row: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """The samples of a results row, or None when the row is missing or holds an error."""
    if row is None or row.get("error") or not isinstance(row.get("samples"), list):
        return None
    return row["samples"]


def row_error(row: dict[str, Any] | None) -> str:
    """Why a results row holds no answer."""
    if row is None:
        return "no reply yet"
    return str(row.get("error") or "no samples")


@dataclass
class StepReport:
    """Counts of one step: how many came in, how many were kept, and why the others were not.

    Attributes:
        step: the step's name.
        input: items read (questions, or traces for the trace filter).
        kept: items kept.
        dropped: reason -> count of items not kept (every item not kept has one reason).
        pending: items not decided yet because a call failed or is missing (rerun to retry);
            they are counted in ``dropped`` under their ``pending_*`` reason too.
        calls: the ``run_batch`` summaries of this run (``calls`` is 0 on a rerun).
        outputs: files written.
        extra: step-specific figures.
    """

    step: str
    input: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    pending: int = 0
    calls: list[dict[str, Any]] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_records(cls, step: str, records: Sequence[dict[str, Any]], **kwargs: Any) -> StepReport:
        reasons = Counter(r["reason"] for r in records if not r.get("kept"))
        pending = sum(n for reason, n in reasons.items() if reason.startswith(PENDING_PREFIX))
        return cls(step=step, input=len(records), kept=sum(1 for r in records if r.get("kept")),
                   dropped=dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
                   pending=pending, **kwargs)

    @property
    def model_calls(self) -> int:
        return sum(int(c.get("calls") or 0) for c in self.calls)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["model_calls"] = self.model_calls
        return data

    def write(self, path: Path) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def read(cls, path: Path) -> StepReport:
        """A report written by :meth:`write`."""
        data, _ = read_json(path)
        data.pop("model_calls", None)
        return cls(**data)


def stored_step_reports(out_dir: Path, steps: Iterable[str]) -> list[StepReport]:
    """The reports ``out_dir/<step>/report.json`` of ``steps`` written so far, in that order."""
    paths = (out_dir / step / "report.json" for step in steps)
    return [StepReport.read(path) for path in paths if path.exists()]


def write_stage_summary(out_dir: Path, reports: Sequence[StepReport], **extra: Any) -> dict[str, Any]:
    """``out_dir/report.json``: every step's report, the counts table, then ``extra``."""
    summary: dict[str, Any] = {"steps": {r.step: r.to_dict() for r in reports}, "table": format_table(reports),
                               **extra}
    atomic_write_json(out_dir / "report.json", summary)
    return summary


def format_table(reports: Sequence[StepReport]) -> str:
    """A short text table: step, in, kept, dropped, calls, and the drop reasons."""
    header = ("step", "in", "kept", "dropped", "calls", "reasons")
    rows = [header]
    for report in reports:
        reasons = ", ".join(f"{k}={v}" for k, v in report.dropped.items()) or "-"
        rows.append((report.step, str(report.input), str(report.kept), str(report.input - report.kept),
                     str(report.model_calls), reasons))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = []
    for row in rows:
        lines.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(row[:-1], widths))) + "  " + row[-1])
    return "\n".join(lines)


def write_step_outputs(step_dir: Path, step: str, records: list[dict[str, Any]],
                       questions: dict[str, Question], calls: list[dict[str, Any]] | None = None,
                       extra: dict[str, Any] | None = None,
                       kept_questions: dict[str, Question] | None = None) -> StepReport:
    """Write ``records.jsonl``, ``kept.jsonl`` and ``report.json`` of a question step.

    ``kept_questions`` replaces the question written for an id (e.g. the caption-stripped one).
    """
    write_jsonl(step_dir / "records.jsonl", records)
    replaced = kept_questions or {}
    kept = [replaced.get(r["id"], questions[r["id"]]) for r in records if r.get("kept")]
    write_questions(step_dir / "kept.jsonl", kept)
    report = StepReport.from_records(step, records, calls=list(calls or []), extra=dict(extra or {}),
                                     outputs={"records": str(step_dir / "records.jsonl"),
                                              "kept": str(step_dir / "kept.jsonl")})
    report.write(step_dir / "report.json")
    return report
