"""Plumbing shared by the curation and distillation steps: banks, messages, calls, reports.

Every step reads a bank (JSONL of ``Question.to_dict()``), makes its model calls through
:func:`mede2_plugin.client.run_batch` (resumable: a rerun skips answered ids and makes no call),
derives one decision record per item from the stored replies, and writes:

* ``records.jsonl``: every item with ``kept``, ``reason`` and the evidence (never dropped);
* ``kept.jsonl``: the bank of kept questions, the next step's input;
* ``report.json``: a :class:`StepReport` (counts in and out, drop reasons, call summaries).

Decision files are rewritten atomically on every run (they are a pure function of the stored
replies and the settings, so they can be re-thresholded without new calls); the replies
themselves live in the append-only results files of ``run_batch``.

A results file is keyed by item id only: after changing a prompt template or a model, delete
that step's ``*.results.jsonl`` to ask again (the reports record each prompt template's hash, so
a change is visible; the response cache still answers unchanged requests for free).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mede2_plugin.chat_format import image_part, system_prompt
from mede2_plugin.client.config import BackendConfig, ChatRequest
from mede2_plugin.jsonl import JsonlStore, write_jsonl
from mede2_plugin.prompts import render
from mede2_plugin.questions import Question

KEPT = "kept"
PENDING_PREFIX = "pending"  # reasons starting with this: not decided yet (a failed or missing call)


@dataclass
class BankSource:
    """A question bank on disk and how to load it.

    Attributes:
        path: the bank's file or folder.
        format: a format of :data:`mede2_plugin.data.FORMATS` (``bank`` for our own JSONL banks,
            ``medqa``, ``medbullets``, ``medxpertqa``, ``mmmu``, ``mmmu_pro``, ``generic``).
        options: keyword options passed to the loader (e.g. ``images_dir``, ``mapping``).
        name: a label for reports (default: the file name).
    """

    path: str = ""
    format: str = "bank"
    options: dict[str, Any] = field(default_factory=dict)
    name: str | None = None

    @property
    def label(self) -> str:
        return self.name or Path(self.path).name

    def load(self):
        """Load with :func:`mede2_plugin.data.load_bank`; returns its ``LoadResult``."""
        from mede2_plugin.data import load_bank

        if not self.path:
            raise ValueError("no bank path given")
        return load_bank(self.path, self.format, **self.options)


def parse_bank_spec(spec: str) -> BankSource:
    """``PATH`` or ``PATH:FORMAT`` (command-line form of :class:`BankSource`)."""
    path, _, fmt = spec.rpartition(":") if re.search(r":[A-Za-z_]+$", spec) else (spec, "", "")
    return BankSource(path=path or spec, format=fmt or "bank")


def read_questions(path: str | Path) -> list[Question]:
    """The questions of a bank file written by a previous step (errors name file and line)."""
    from mede2_plugin.data import read_bank

    return read_bank(path)


def write_questions(path: str | Path, questions: Iterable[Question]) -> int:
    from mede2_plugin.data import write_bank

    return write_bank(path, questions)


def slug(text: str) -> str:
    """A file-name-safe label (``gemini-2.5-pro`` stays, ``Qwen/QwQ-32B`` -> ``Qwen_QwQ-32B``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


# -- messages ---------------------------------------------------------------------------------

def resolve_images(question: Question, media_dir: str | Path | None) -> list[str]:
    return [str(Path(media_dir) / p) if media_dir and not Path(p).is_absolute() and "://" not in p else p
            for p in question.images]


def question_messages(question: Question, template: str, system_template: str | None = None,
                      paper_system: bool = False, media_dir: str | Path | None = None,
                      send_images: bool = True, embed_images: bool = True,
                      **variables: Any) -> list[dict[str, Any]]:
    """OpenAI-style messages for one question: optional system turn, then images and the prompt.

    Args:
        question: the question (its fields are template variables, plus ``question_record``).
        template: the user-turn template, e.g. ``prompts/curate_solver.j2``.
        system_template: a system-turn template; None for no system turn (unless ``paper_system``).
        paper_system: use the paper's Appendix-A system prompt as the system turn.
        media_dir: folder that relative image paths are relative to.
        send_images: attach the question's images (image parts before the text).
        embed_images: local images as data URLs (else file URIs).
        **variables: extra template variables.
    """
    text = render(template, question=question.question, options=question.options,
                  patient_info=question.patient_info, answer=question.answer,
                  n_images=len(question.images), question_record=question, **variables).strip()
    content: str | list[dict[str, Any]] = text
    if send_images and question.images:
        content = [image_part(p, embed_images) for p in resolve_images(question, media_dir)]
        content.append({"type": "text", "text": text})
    messages: list[dict[str, Any]] = []
    if system_template:
        messages.append({"role": "system", "content": render(system_template).strip()})
    elif paper_system:
        messages.append({"role": "system", "content": system_prompt()})
    messages.append({"role": "user", "content": content})
    return messages


# -- model calls ------------------------------------------------------------------------------

def call_models(requests: Sequence[ChatRequest], output: Path, config: BackendConfig,
                stage: str) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Run ``requests`` through :func:`run_batch` into ``output``; return rows by id and the summary.

    With no requests nothing is called; the rows already in ``output`` are still returned.
    """
    summary: dict[str, Any] = {"stage": stage, "output": str(output), "backend": config.backend,
                               "model": config.model, "total": 0, "calls": 0}
    if requests:
        from mede2_plugin.client import run_batch

        summary = run_batch(list(requests), output=output, config=config, stage=stage).to_dict()
    rows = {}
    if output.exists():
        with JsonlStore(output) as store:
            rows = {row_id: row for row_id, row in ((r["id"], r) for r in store.records())}
    return rows, summary


def json_question_request(question: Question, settings: Any, schema: dict[str, Any], n: int = 1,
                          media_dir: str | Path | None = None, embed_images: bool = True,
                          **variables: Any) -> ChatRequest:
    """A request for one question that asks for a JSON reply (classifier, caption rewriter).

    ``settings`` is the step's config: ``prompt_template``, ``send_images``, ``temperature``,
    ``max_tokens`` and ``use_json_schema`` (send ``schema`` as the response schema).
    """
    messages = question_messages(question, settings.prompt_template, media_dir=media_dir,
                                 send_images=settings.send_images, embed_images=embed_images, **variables)
    return ChatRequest(id=question.id, messages=messages, n=n, temperature=settings.temperature,
                       max_tokens=settings.max_tokens, response_schema=schema if settings.use_json_schema else None)


def ask_image_questions(questions: Sequence[Question], ask_text_questions: bool,
                        request: Callable[[Question], ChatRequest], backend: BackendConfig, step_dir: Path,
                        stage: str) -> tuple[list[Question], dict[str, dict[str, Any]], dict[str, Any]]:
    """Ask ``backend`` about the image questions (text-only ones too with ``ask_text_questions``).

    Replies go to ``step_dir/<model>.results.jsonl`` (see :func:`call_models`). Returns the
    questions asked, the result rows by id, and the run summary.
    """
    step_dir.mkdir(parents=True, exist_ok=True)
    to_ask = [q for q in questions if q.images or ask_text_questions]
    rows, summary = call_models([request(q) for q in to_ask], step_dir / f"{slug(backend.model)}.results.jsonl",
                                backend, stage)
    return to_ask, rows, summary


def row_samples(row: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """The samples of a results row, or None when the row is missing or holds an error."""
    if row is None or row.get("error") or not isinstance(row.get("samples"), list):
        return None
    return row["samples"]


def row_error(row: dict[str, Any] | None) -> str:
    if row is None:
        return "no reply yet"
    return str(row.get("error") or "no samples")


# -- reports ----------------------------------------------------------------------------------

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
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> StepReport:
        """A report written by :meth:`write`."""
        data = json.loads(path.read_text(encoding="utf-8"))
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
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n",
                                         encoding="utf-8")
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
    step_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(step_dir / "records.jsonl", records)
    replaced = kept_questions or {}
    kept = [replaced.get(r["id"], questions[r["id"]]) for r in records if r.get("kept")]
    write_questions(step_dir / "kept.jsonl", kept)
    report = StepReport.from_records(step, records, calls=list(calls or []), extra=dict(extra or {}),
                                     outputs={"records": str(step_dir / "records.jsonl"),
                                              "kept": str(step_dir / "kept.jsonl")})
    report.write(step_dir / "report.json")
    return report
