"""What the stages take from the human reviews: rewrite decisions for caption stripping, flagged
pairs for the pair builder. Stages call these; this module imports no stage.

Rewrites (``mede2 curate strip``): the latest decision on a question, by any reviewer, wins.

* ``accept`` keeps the model's rewrite, also one the automatic checks failed;
* ``edit`` replaces the model's text with the reviewer's (question and patient information);
* ``reject`` falls back as the step is configured (``StripConfig.on_check_failure``): ``drop``
  drops the question (reason ``rejected_by_reviewer``), ``keep_original`` keeps it unrewritten.

An accept or reject is bound to the rewrite the reviewer saw (its hash): when the rewriter has
since written another one, the decision is *stale*, is not applied and is reported as such. An
edit holds the reviewer's own text and always applies. The kept question carries the decision in
``metadata["caption_stripping"]["human_review"]``.

Pairs (``mede2 pairs --drop-flagged``): a pair whose latest review by any reviewer flags it is
left out, when its chosen and rejected texts are still the ones that reviewer saw.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

from mede2_plugin.core.questions import Question
from mede2_plugin.core.review_log import (
    LOGS,
    REVIEW_DIR,
    ReviewLog,
    content_sha,
    find_review_dir,
)

ACTIONS = ("accept", "edit", "reject")
REJECTED = "rejected_by_reviewer"


def _review_dir(source: str | Path) -> Path | None:
    """``source`` itself when it is a review folder, else the one found above it."""
    source = Path(source)
    if source.is_dir() and (source.name == REVIEW_DIR or any((source / name).is_file() for name in LOGS.values())):
        return source
    return find_review_dir(source)


def rewrite_decisions(run_or_step_dir: str | Path) -> dict[str, dict[str, Any]]:
    """``{question_id: decision}``: the latest rewrite review of each question, by any reviewer,
    from the review folder of ``run_or_step_dir`` (a review folder, a step folder, a run); ``{}``
    when there is none."""
    folder = _review_dir(run_or_step_dir)
    if folder is None:
        return {}
    latest: dict[str, dict[str, Any]] = {}
    for row in ReviewLog(folder, "rewrites").records():
        if row.get("decision") in ACTIONS:
            latest[row["item"]] = row
    return latest


def apply_rewrite_decision(record: dict[str, Any], question: Question, decision: dict[str, Any],
                           on_check_failure: str) -> tuple[dict[str, Any], Question | None]:
    """The strip record and the question to keep after a reviewer's decision.

    ``record`` is the step's decision record of ``question`` (the original question). The
    question returned is None when the decision is stale (nothing changes).
    """
    action = decision["decision"]
    review = {"decision": action, "reviewer": decision["reviewer"], "time": decision.get("time"),
              "note": decision.get("note") or ""}
    rewrite = record.get("rewrite")
    if action != "edit" and (rewrite is None or decision.get("rewrite_sha") != content_sha(rewrite)):
        return {**record, "human_review": {**review, "stale": True}}, None
    if action == "edit":
        edited = decision.get("edited") or {}
        text = {"question": str(edited.get("question") or "").strip(),
                "patient_info": str(edited.get("patient_info") or "").strip()}
        if not text["question"]:
            return {**record, "human_review": {**review, "stale": True, "error": "empty edited question"}}, None
    else:
        text = {"question": rewrite["question"], "patient_info": rewrite["patient_info"]}
    note = {"original_question": question.question, "original_patient_info": question.patient_info,
            "removed": (rewrite or {}).get("removed", []), "failed_checks": record.get("failed_checks", []),
            "rewritten": action != "reject", "human_review": review}
    metadata = {**question.metadata, "caption_stripping": note}
    if action == "reject":
        kept = dataclasses.replace(question, metadata=metadata)
        if on_check_failure == "keep_original":
            return {**record, "kept": True, "reason": "kept", "kept_original": True, "human_review": review}, kept
        return {**record, "kept": False, "reason": REJECTED, "human_review": review}, kept
    kept = dataclasses.replace(question, question=text["question"], patient_info=text["patient_info"],
                               metadata=metadata)
    changes = {"kept": True, "reason": "kept", "kept_original": False, "human_review": review}
    if action == "edit":
        changes["edited"] = text
    return {**record, **changes}, kept


def review_counts(records: list[dict[str, Any]]) -> dict[str, int]:
    """How many records each kind of human decision changed (``stale``: not applied)."""
    counts: Counter[str] = Counter()
    for record in records:
        review = record.get("human_review")
        if review:
            counts["stale" if review.get("stale") else review["decision"]] += 1
    return dict(sorted(counts.items()))


def pair_sha(chosen: str, rejected: str) -> str:
    """The hash of a pair's two texts, as the reviewer saw them."""
    return content_sha([chosen, rejected])


def flagged_pairs(source: str | Path) -> dict[str, set[str]]:
    """``{pair_id: {text hashes}}`` of the pairs whose latest review, by some reviewer, flags them.

    ``source`` is a review folder (``RUN/review``), or a file or folder (the judged file) whose
    review folder is found above it; ``{}`` when there is none.
    """
    folder = _review_dir(source)
    if folder is None:
        return {}
    flagged: dict[str, set[str]] = {}
    for (item, _), row in ReviewLog(folder, "pairs").latest().items():
        if row.get("flagged"):
            flagged.setdefault(item, set()).add(str(row.get("pair_sha")))
    return flagged


def drop_flagged(records: list[dict[str, Any]], flagged: dict[str, set[str]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The ``mede2_pref`` records without the flagged ones, and the ids left out."""
    kept, dropped = [], []
    for record in records:
        if pair_sha(record["chosen"], record["rejected"]) in flagged.get(record["id"], ()):
            dropped.append(record["id"])
        else:
            kept.append(record)
    return kept, dropped
