"""What a review app opened on a folder sees: the run's files, its data folders, the items.

The folder is a ``mede2 run`` / ``mede2 demo`` output or any stage output inside or outside one
(a curation bank folder, a strip step, an MMRP work folder, a pairs dataset folder). Files are
found by what they are, not by where the pipeline puts them:

* caption stripping: a folder with ``records.jsonl`` and a ``report.json`` of step ``strip``;
* funnel steps: a ``report.json`` with ``steps`` (a curation bank, distillation);
* rollouts: ``*rollouts.jsonl``; judged candidates: ``*judged.jsonl``;
* pairs: ``<name>_pairs_report.json`` beside ``<name>.jsonl``;
* the Table-1 report: ``PREFIX.md`` beside ``PREFIX.csv`` (``PREFIX_scaling.png`` its plot).

Only files inside the run (its root: see :func:`~mede2_plugin.core.review_log.run_root`) and its
data folders are ever read for display: the data folders are the input folders the run's
manifest lists (or a curation report names), plus those given with ``--data-dir``. An image path
in a record pointing anywhere else is not shown.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mede2_plugin.core.jsonl import read_jsonl
from mede2_plugin.core.review_log import REVIEW_DIR, RUN_MANIFEST, run_root
from mede2_plugin.mmrp.criteria import ANSWER_CORRECTNESS, CRITERIA, NO, YES, classify

SKIP_DIRS = {"models", "cache", "logs", "state", "superseded", "simulated", "train", "eval", "images",
             REVIEW_DIR, "__pycache__", ".gradio", ".git"}
MAX_DEPTH = 5
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
STRATA = ("positive", "hard_negative", "negative")


@dataclass
class RewriteItem:
    """One caption-stripped question: the strip step's record and the question it came from."""

    id: str
    bank: str
    step_dir: Path
    record: dict[str, Any]
    question: dict[str, Any]

    @property
    def rewrite(self) -> dict[str, Any] | None:
        return self.record.get("rewrite")


@dataclass
class JudgeItem:
    """One judged candidate: question, candidate text and the judge's five-criteria verdict."""

    id: str
    question_id: str
    index: int
    prompt: str
    images: list[str]
    answer: str
    answer_text: str
    text: str
    verdict: dict[str, str]
    base: Path

    @property
    def stratum(self) -> str:
        if classify(self.verdict) == "positive":
            return "positive"
        return "hard_negative" if self.verdict.get(ANSWER_CORRECTNESS) == YES else "negative"


@dataclass
class PairItem:
    """One preference pair with the verdicts of its two candidates (when the judged file is there)."""

    id: str
    question_id: str
    prompt: str
    images: list[str]
    chosen: str
    rejected: str
    rejected_failed: list[str]
    chosen_verdict: dict[str, str] = field(default_factory=dict)
    rejected_verdict: dict[str, str] = field(default_factory=dict)
    base: Path = Path(".")


def _is_judged(verdict: dict[str, Any]) -> bool:
    return all(verdict.get(name) in (YES, NO) for name in CRITERIA)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _rows(path: Path) -> list[dict[str, Any]]:
    return list(read_jsonl(path, allow_torn_tail=True)) if path.is_file() else []


class RunFiles:
    """The files of a run (or stage folder) and the folders the app may show files from."""

    def __init__(self, folder: str | Path, data_dirs: list[str | Path] = ()) -> None:
        self.scope = Path(folder).resolve()
        if not self.scope.is_dir():
            raise ValueError(f"{folder}: not a folder")
        self.root = run_root(self.scope)
        self.review_dir = self.root / REVIEW_DIR
        self.strip_steps: list[Path] = []
        self.step_reports: list[Path] = []
        self.rollouts: list[Path] = []
        self.judged: list[Path] = []
        self.pair_reports: list[Path] = []
        self.reports: list[Path] = []
        self._walk()
        self.data_dirs = self._data_dirs([Path(d) for d in data_dirs])

    def _walk(self) -> None:
        base_depth = len(self.scope.parts)
        for folder, dirs, files in os.walk(self.scope):
            here = Path(folder)
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and len(here.parts) - base_depth < MAX_DEPTH)
            names = set(files)
            if "report.json" in names:
                report = _read_json(here / "report.json") or {}
                if isinstance(report, dict) and report.get("step") == "strip" and "records.jsonl" in names:
                    self.strip_steps.append(here)
                if isinstance(report, dict) and isinstance(report.get("steps"), dict):
                    self.step_reports.append(here / "report.json")
            for name in sorted(names):
                path = here / name
                if name.endswith("rollouts.jsonl"):
                    self.rollouts.append(path)
                elif name.endswith("judged.jsonl"):
                    self.judged.append(path)
                elif name.endswith("_pairs_report.json"):
                    self.pair_reports.append(path)
                elif name.endswith(".md") and f"{name[:-3]}.csv" in names:
                    self.reports.append(path.with_suffix(""))

    def _data_dirs(self, given: list[Path]) -> list[Path]:
        """The run's input folders (manifest, curation reports) and ``given``, that exist."""
        found: list[Path] = list(given)
        manifest = _read_json(self.root / RUN_MANIFEST)
        if isinstance(manifest, dict):
            for stage in (manifest.get("stages") or {}).values():
                for name in ((stage or {}).get("inputs") or {}).get("files") or {}:
                    path = Path(name)
                    found.append(path if path.is_dir() else path.parent)
        for report_path in self.step_reports:
            report = _read_json(report_path) or {}
            bank = ((report.get("steps") or {}).get("load") or {}).get("extra", {}).get("bank")
            if isinstance(bank, str):
                found.append(Path(bank) if Path(bank).is_dir() else Path(bank).parent)
        dirs: list[Path] = []
        for path in found:
            resolved = path.resolve()
            if resolved.is_dir() and resolved != Path(resolved.anchor) and resolved not in dirs:
                dirs.append(resolved)
        return dirs

    @property
    def allowed(self) -> list[Path]:
        """The folders whose files the app may show: the run's root and its data folders."""
        return [self.root, *self.data_dirs]

    def inside(self, path: Path) -> bool:
        resolved = path.resolve()
        return any(resolved.is_relative_to(folder) for folder in self.allowed)

    def safe_image(self, raw: Any, base: Path | None = None) -> Path | None:
        """The image file a record names, when it is inside the run or a data folder; else None."""
        if not isinstance(raw, str) or not raw.strip() or "://" in raw or raw.startswith("data:"):
            return None
        path = Path(raw)
        tries = [path] if path.is_absolute() else [folder / path for folder in ([base] if base else []) + self.allowed]
        for candidate in tries:
            resolved = candidate.resolve()
            if resolved.suffix.lower() in IMAGE_SUFFIXES and resolved.is_file() and self.inside(resolved):
                return resolved
        return None

    def label(self, path: Path) -> str:
        """``path`` relative to the scope (or the run root), for display."""
        for base in (self.scope, self.root):
            if path.resolve().is_relative_to(base):
                return str(path.resolve().relative_to(base)) or "."
        return str(path)

    # --- items -----------------------------------------------------------------------------

    def rewrite_items(self) -> list[RewriteItem]:
        """The caption-stripping records of image questions the rewriter was asked about."""
        items = []
        for step_dir in self.strip_steps:
            questions: dict[str, dict[str, Any]] = {}
            for kept in sorted(step_dir.parent.glob("*/kept.jsonl")):
                for row in _rows(kept):
                    questions.setdefault(str(row.get("id")), row)
            for record in _rows(step_dir / "records.jsonl"):
                if record.get("asked"):
                    qid = str(record["id"])
                    items.append(RewriteItem(qid, self.label(step_dir.parent), step_dir, record, questions.get(qid, {})))
        return items

    def judged_rows(self) -> list[tuple[Path, dict[str, Any]]]:
        latest: dict[str, tuple[Path, dict[str, Any]]] = {}
        for path in self.judged:
            for row in _rows(path):
                if "id" in row and isinstance(row.get("candidates"), list):
                    latest[str(row["id"])] = (path, row)
        return list(latest.values())

    def judge_items(self) -> list[JudgeItem]:
        """Every candidate the judge rated on all five criteria (pre-screened ones were not asked)."""
        items = []
        for path, row in self.judged_rows():
            for candidate in row["candidates"]:
                verdict = candidate.get("verdict") or {}
                if not _is_judged(verdict) or candidate.get("judge_attempts", 1) == 0:
                    continue
                items.append(JudgeItem(
                    id=f"{row['id']}#c{candidate['index']}", question_id=str(row["id"]), index=int(candidate["index"]),
                    prompt=str(row.get("prompt") or ""), images=list(row.get("images") or []),
                    answer=str(row.get("answer") or ""), answer_text=str(row.get("answer_text") or ""),
                    text=str(candidate.get("text") or ""), verdict={k: verdict[k] for k in CRITERIA},
                    base=path.parent))
        return items

    def pair_items(self) -> list[PairItem]:
        """The pairs of every pairs dataset found, with their candidates' verdicts."""
        verdicts: dict[tuple[str, int], dict[str, str]] = {}
        for _, row in self.judged_rows():
            for candidate in row["candidates"]:
                verdicts[(str(row["id"]), int(candidate["index"]))] = dict(candidate.get("verdict") or {})
        items = []
        for report in self.pair_reports:
            native = report.with_name(report.name[: -len("_pairs_report.json")] + ".jsonl")
            for row in _rows(native):
                qid = str(row.get("question_id") or "")
                items.append(PairItem(
                    id=str(row["id"]), question_id=qid, prompt=str(row.get("prompt") or ""),
                    images=list(row.get("images") or []), chosen=str(row.get("chosen") or ""),
                    rejected=str(row.get("rejected") or ""), rejected_failed=list(row.get("rejected_failed") or []),
                    chosen_verdict=verdicts.get((qid, int(row.get("chosen_index", -1))), {}),
                    rejected_verdict=verdicts.get((qid, int(row.get("rejected_index", -1))), {}),
                    base=native.parent))
        return items
