"""What the review app's views show and do: :class:`ReviewApp` has one method per user action
(the Gradio handlers of :mod:`.views` call them).

Every decision is appended to the run's review logs the moment it is made
(:mod:`mede2_plugin.core.review_log`); nothing is kept in the browser. Each view opens on the
reviewer's first item without a decision, so a reopened page continues where the reviewer
stopped. Images reach the browser only as copies the app makes of files inside the run and its
data folders (:class:`Served`).
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mede2_plugin.core.review_decisions import pair_sha
from mede2_plugin.core.review_log import ReviewLog, check_reviewer, content_sha
from mede2_plugin.mmrp.criteria import CRITERIA
from mede2_plugin.review import render
from mede2_plugin.review.audit import (
    audit_sample,
    current_scores,
    item_sha,
    per_criterion,
    reviewer_agreement,
    score_rows,
    write_scores,
)
from mede2_plugin.review.funnel import funnel
from mede2_plugin.review.run import JudgeItem, PairItem, RewriteItem, RunFiles

ALL = "(all)"


@dataclass
class ReviewSettings:
    """Settings of one review app.

    Attributes:
        reviewer: the reviewer name the page starts with (each browser can change it).
        audit_size: candidates in the judge-audit sample.
        audit_seed: seed of the sample.
        agreement_min: scored items before the agreement report is shown.
    """

    reviewer: str = "reviewer"
    audit_size: int = 30
    audit_seed: int = 0
    agreement_min: int = 3


class Served:
    """Copies of image files the page may show, in the app's private folder (what the browser can
    fetch). Only files inside the run or its data folders are copied."""

    def __init__(self, files: RunFiles, folder: Path) -> None:
        self.files = files
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._copies: dict[tuple[str, int, int], str] = {}

    def image(self, raw: Any, base: Path | None = None) -> str | None:
        path = self.files.safe_image(raw, base)
        if path is None:
            return None
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        if key not in self._copies:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:20]
            target = self.folder / f"{digest}{path.suffix.lower()}"
            if not target.exists():
                shutil.copyfile(path, target)
            self._copies[key] = str(target)
        return self._copies[key]

    def gallery(self, images: list[Any], base: Path | None = None) -> tuple[list[tuple[str, str]], list[str]]:
        """``[(copy, caption)]`` of the images that may be shown, and the names of those refused."""
        shown, refused = [], []
        for raw in images:
            copy = self.image(raw, base)
            if copy is None:
                refused.append(str(raw))
            else:
                shown.append((copy, Path(str(raw)).name))
        return shown, refused


def _refused_note(refused: list[str]) -> str:
    if not refused:
        return ""
    names = ", ".join(Path(r).name or r for r in refused)
    return (f'<div class="mede2-meta">{len(refused)} image(s) not shown (outside the run and its data '
            f'folders, or missing): {render.escape(names)}. Start the app with --data-dir to allow a folder.</div>')


def _next_open(ids: list[str], done: set[str], after: str | None) -> str | None:
    """The first id without a decision after ``after`` (wrapping), else None."""
    if not ids:
        return None
    start = ids.index(after) + 1 if after in ids else 0
    for key in ids[start:] + ids[:start]:
        if key not in done:
            return key
    return None


class ReviewApp:
    """The data behind the views, and one method per user action (the Gradio handlers call these)."""

    def __init__(self, files: RunFiles, settings: ReviewSettings, served_dir: Path) -> None:
        self.files = files
        self.settings = settings
        self.served = Served(files, served_dir)
        self.rewrites: list[RewriteItem] = files.rewrite_items()
        self.judge_items: list[JudgeItem] = files.judge_items()
        # shown in an order that does not tell the stratum (the sample itself alternates strata)
        self.sample: list[JudgeItem] = sorted(audit_sample(self.judge_items, settings.audit_size, settings.audit_seed),
                                              key=lambda i: content_sha([settings.audit_seed, i.id]))
        self.pairs: list[PairItem] = files.pair_items()
        self.funnel = funnel(files)
        self.logs = {kind: ReviewLog(files.review_dir, kind) for kind in ("rewrites", "judge", "pairs")}
        self.rewrite_by_id = {i.id: i for i in self.rewrites}
        self.sampled_by_id = {i.id: i for i in self.sample}
        self.pair_by_id = {i.id: i for i in self.pairs}

    # --- rewrites ------------------------------------------------------------------------------

    def rewrite_decisions(self, reviewer: str) -> dict[str, dict[str, Any]]:
        return self.logs["rewrites"].by_item(reviewer)

    @staticmethod
    def _stale(item: RewriteItem, decision: dict[str, Any] | None) -> bool:
        return (decision is not None and decision["decision"] != "edit"
                and decision.get("rewrite_sha") != content_sha(item.rewrite))

    def rewrite_choices(self, reviewer: str) -> list[tuple[str, str]]:
        done = self.rewrite_decisions(reviewer)
        return [(f"{'✓ ' + done[i.id]['decision'] if i.id in done else '· open'} | {i.id}", i.id) for i in self.rewrites]

    def first_open_rewrite(self, reviewer: str, after: str | None = None) -> str | None:
        done = {k for k, d in self.rewrite_decisions(reviewer).items()
                if k in self.rewrite_by_id and not self._stale(self.rewrite_by_id[k], d)}
        ids = [i.id for i in self.rewrites]
        return _next_open(ids, done, after) or (after if after in ids else (ids[0] if ids else None))

    def rewrite_view(self, reviewer: str, item_id: str | None) -> dict[str, Any]:
        """What the Rewrites view shows for one item."""
        item = self.rewrite_by_id.get(item_id or "")
        if item is None:
            return {"header": '<div id="rw-current" data-item="">No caption-stripped questions in this folder.</div>',
                    "original": "", "rewrite": "", "gallery": [], "options": "", "patient": "", "question": "",
                    "note": ""}
        decision = self.rewrite_decisions(reviewer).get(item.id)
        position = f"{[i.id for i in self.rewrites].index(item.id) + 1} of {len(self.rewrites)}"
        original, rewrite = render.rewrite_panels(item.record.get("original") or {}, item.rewrite)
        gallery, refused = self.served.gallery(item.question.get("images") or [], item.step_dir)
        edited = (decision or {}).get("edited") if (decision or {}).get("decision") == "edit" else None
        text = edited or item.rewrite or item.record.get("original") or {}
        return {"header": render.rewrite_header(item, decision, position, self._stale(item, decision)) + _refused_note(refused),
                "original": original, "rewrite": rewrite, "gallery": gallery,
                "options": render.options_html(item.question.get("options") or {}, item.question.get("answer")),
                "patient": text.get("patient_info", ""), "question": text.get("question", ""),
                "note": (decision or {}).get("note", "")}

    def decide_rewrite(self, reviewer: str, item_id: str, action: str, patient: str = "", question: str = "",
                       note: str = "") -> str:
        """Append a rewrite decision; returns the id to show next."""
        item = self.rewrite_by_id[item_id]
        fields: dict[str, Any] = {"decision": action, "rewrite_sha": content_sha(item.rewrite) if item.rewrite else None,
                                  "step": self.files.label(item.step_dir), "note": note.strip()}
        if action == "edit":
            if not question.strip():
                raise ValueError("the edited question is empty")
            fields["edited"] = {"patient_info": patient.strip(), "question": question.strip()}
        self.logs["rewrites"].append(item_id, check_reviewer(reviewer), **fields)
        return self.first_open_rewrite(reviewer, after=item_id) or item_id

    # --- judge audit -----------------------------------------------------------------------------

    def scores(self, reviewer: str) -> dict[str, dict[str, Any]]:
        return current_scores(self.logs["judge"], reviewer, self.sample)

    def judge_choices(self, reviewer: str) -> list[tuple[str, str]]:
        done = self.scores(reviewer)
        return [(f"{'✓ scored' if i.id in done else '· open'} | {n + 1}. {i.id}", i.id) for n, i in enumerate(self.sample)]

    def first_open_judge(self, reviewer: str, after: str | None = None) -> str | None:
        ids = [i.id for i in self.sample]
        return _next_open(ids, set(self.scores(reviewer)), after) or (after if after in ids else (ids[0] if ids else None))

    def audit_info(self, reviewer: str) -> str:
        counts = {name: sum(i.stratum == name for i in self.sample) for name in ("positive", "hard_negative", "negative")}
        strata = ", ".join(f"{k} {v}" for k, v in counts.items())
        return (f'<div class="mede2-meta">Blind audit: {len(self.sample)} of the {len(self.judge_items)} candidates the '
                f'judge rated (seed {self.settings.audit_seed}; by verdict: {render.escape(strata)}). You have scored '
                f'{len(self.scores(reviewer))}. Your scores lock when saved; the judge\'s verdict then shows. '
                'The Pairs and Run report views show verdicts too: audit first.</div>')

    def judge_view(self, reviewer: str, item_id: str | None) -> dict[str, Any]:
        item = self.sampled_by_id.get(item_id or "")
        if item is None:
            return {"header": '<div id="ja-current" data-item="">No judged candidates in this folder.</div>',
                    "gallery": [], "question": "", "candidate": "", "scores": {}, "locked": False,
                    "verdict": render.HIDDEN_VERDICT, "note": ""}
        scored = self.scores(reviewer).get(item.id)
        position = f"{[i.id for i in self.sample].index(item.id) + 1} of {len(self.sample)}"
        gallery, refused = self.served.gallery(item.images, item.base)
        answer = f"{item.answer}. {item.answer_text}" if item.answer_text else item.answer
        question = (render.text_block(item.prompt)
                    + f'<div class="mede2-meta">ground truth: {render.escape(answer)}</div>')
        header = (f'<div id="ja-current" data-item="{render.escape(item.id, quote=True)}"><b>{render.escape(item.id)}</b> '
                  f'<span class="mede2-meta">{position} · '
                  f'{"scored" if scored else "not scored yet"}</span></div>') + _refused_note(refused)
        return {"header": header, "gallery": gallery, "question": question, "candidate": render.candidate_html(item.text),
                "scores": (scored or {}).get("scores", {}), "locked": scored is not None,
                "verdict": render.comparison_html(scored["scores"], item.verdict) if scored else render.HIDDEN_VERDICT,
                "note": (scored or {}).get("note", "")}

    def score_judge(self, reviewer: str, item_id: str, values: dict[str, str | None], note: str = "") -> None:
        """Append the reviewer's five criteria for a sampled candidate (once: scores lock when saved)."""
        reviewer = check_reviewer(reviewer)
        item = self.sampled_by_id[item_id]
        if item_id in self.scores(reviewer):
            raise ValueError("already scored: a blind score cannot be changed after the judge's verdict was shown")
        missing = [name for name in CRITERIA if values.get(name) not in ("Yes", "No")]
        if missing:
            raise ValueError(f"answer every criterion first (missing: {', '.join(missing)})")
        self.logs["judge"].append(item_id, reviewer, question_id=item.question_id, candidate=item.index,
                                  scores={name: values[name] for name in CRITERIA}, item_sha=item_sha(item),
                                  note=note.strip())

    def agreement(self, reviewer: str) -> tuple[str, str | None]:
        """The reviewer's agreement report (HTML) and histogram, exporting the scores for ``mede2 agreement``."""
        rows = score_rows(self.scores(reviewer), self.sample)
        if rows:
            write_scores(self.files.review_dir, reviewer, rows)
        stats = reviewer_agreement(self.files.review_dir, reviewer, rows, self.settings.agreement_min)
        html = render.agreement_html(stats, per_criterion(rows) if stats else {}, len(rows),
                                     self.settings.agreement_min, reviewer)
        plot = (stats or {}).get("files", {}).get("png")
        return html, (self.served.image(plot) if plot else None)

    # --- pairs ---------------------------------------------------------------------------------

    def pair_flags(self, reviewer: str) -> dict[str, dict[str, Any]]:
        return self.logs["pairs"].by_item(reviewer)

    def first_open_pair(self, reviewer: str) -> str | None:
        ids = [p.id for p in self.pairs]
        return _next_open(ids, set(self.pair_flags(reviewer)), None) or (ids[0] if ids else None)

    def pair_ids(self, question: str | None, criterion: str | None) -> list[str]:
        return [p.id for p in self.pairs
                if (not question or question == ALL or p.question_id == question)
                and (not criterion or criterion == ALL or criterion in p.rejected_failed)]

    def pair_choices(self, reviewer: str, ids: list[str]) -> list[tuple[str, str]]:
        flags = self.pair_flags(reviewer)
        def mark(key: str) -> str:
            flag = flags.get(key)
            return "· open" if flag is None else ("⚑ flagged" if flag.get("flagged") else "✓ fine")
        return [(f"{mark(key)} | {key}", key) for key in ids]

    def pair_view(self, reviewer: str, item_id: str | None, ids: list[str]) -> dict[str, Any]:
        item = self.pair_by_id.get(item_id or "")
        if item is None:
            return {"header": '<div id="pa-current" data-item="">No pairs match.</div>', "gallery": [],
                    "prompt": "", "chosen": "", "rejected": "", "note": ""}
        flag = self.pair_flags(reviewer).get(item.id)
        stale = flag is not None and flag.get("pair_sha") != pair_sha(item.chosen, item.rejected)
        position = f"{ids.index(item.id) + 1} of {len(ids)} shown" if item.id in ids else ""
        gallery, refused = self.served.gallery(item.images, item.base)
        def side(text: str, verdict: dict[str, str]) -> str:
            return (render.verdict_badges(verdict) if verdict else "") + render.candidate_html(text)
        return {"header": render.pair_header(item, flag, position, stale) + _refused_note(refused),
                "gallery": gallery, "prompt": render.text_block(item.prompt),
                "chosen": side(item.chosen, item.chosen_verdict), "rejected": side(item.rejected, item.rejected_verdict),
                "note": (flag or {}).get("note", "")}

    def flag_pair(self, reviewer: str, item_id: str, flagged: bool, note: str = "") -> None:
        item = self.pair_by_id[item_id]
        self.logs["pairs"].append(item_id, check_reviewer(reviewer), flagged=flagged,
                                  pair_sha=pair_sha(item.chosen, item.rejected), question_id=item.question_id,
                                  note=note.strip())

    # --- run report ----------------------------------------------------------------------------

    def report_markdown(self) -> str:
        parts = []
        for prefix in self.files.reports:
            text = prefix.with_suffix(".md").read_text(encoding="utf-8")
            parts.append(f"**{self.files.label(prefix.parent)}**\n\n{text}")
        return "\n\n".join(parts) or "No Table-1 report (`mede2 report` output) in this folder."

    def scaling_plot(self) -> str | None:
        for prefix in self.files.reports:
            plot = prefix.with_name(prefix.name + "_scaling.png")
            if plot.is_file():
                return self.served.image(str(plot))
        return None

    def funnel_table(self) -> list[list[Any]]:
        return [row.table_row() for row in self.funnel]

    def funnel_items(self, key: str | None, dropped_only: bool) -> list[list[Any]]:
        row = next((r for r in self.funnel if r.key == key), None)
        if row is None:
            return []
        return [[i["id"], "kept" if i["kept"] else "dropped", i["reason"]] for i in row.items
                if not (dropped_only and i["kept"])]

    def funnel_kind(self, key: str | None) -> str:
        return next((r.kind for r in self.funnel if r.key == key), "")
