"""The judge audit: a seeded sample of judged candidates stratified by verdict, the reviewers'
blind scores, and their agreement with the judge (paper Figure 3, :mod:`mede2_plugin.evaluate.agreement`).

Sample: the candidates the judge rated fall into strata by verdict (``positive``: all five
Yes; ``hard_negative``: right answer, another criterion No; ``negative``: answer judged wrong).
Each stratum is shuffled with a generator seeded by ``(seed, stratum)`` and the strata are taken
in turn, one item each, so every verdict is audited even when one is rare. A larger sample of the
same seed starts with the smaller one: raising the size never throws away done work.

Scores: a reviewer's latest five Yes/No criteria per item (``review/judge_audit.jsonl``) are
exported to ``review/judge_scores/<reviewer>.jsonl`` as ``{"id", "human", "judge"}`` rows (both
the five criteria; a score is the number of Yes), which ``mede2 agreement`` reads as it is::

    mede2 agreement --human RUN/review/judge_scores/alice.jsonl --out agreement/alice
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from mede2_plugin.core.files import atomic_write_text
from mede2_plugin.core.review_log import ReviewLog, content_sha
from mede2_plugin.mmrp.criteria import CRITERIA, YES
from mede2_plugin.review.run import STRATA, JudgeItem

SCORES_DIR = "judge_scores"
AGREEMENT_DIR = "agreement"


def audit_sample(items: list[JudgeItem], size: int, seed: int = 0) -> list[JudgeItem]:
    """``size`` items, stratified by verdict and seeded (see the module docstring)."""
    strata = {name: sorted((i for i in items if i.stratum == name), key=lambda i: i.id) for name in STRATA}
    for name, members in strata.items():
        random.Random(f"{seed}:{name}").shuffle(members)
    sample: list[JudgeItem] = []
    while len(sample) < size and any(strata.values()):
        for name in STRATA:
            if strata[name] and len(sample) < size:
                sample.append(strata[name].pop(0))
    return sample


def item_sha(item: JudgeItem) -> str:
    """What the reviewer scored: the candidate's text and the verdict it is compared with."""
    return content_sha([item.text, item.verdict])


def current_scores(log: ReviewLog, reviewer: str, items: list[JudgeItem]) -> dict[str, dict[str, Any]]:
    """``{item id: review}`` of the reviewer's scores that still match the item (not stale)."""
    by_id = {item.id: item for item in items}
    return {key: row for key, row in log.by_item(reviewer).items()
            if key in by_id and row.get("item_sha") == item_sha(by_id[key]) and isinstance(row.get("scores"), dict)}


def score_rows(scores: dict[str, dict[str, Any]], items: list[JudgeItem]) -> list[dict[str, Any]]:
    """Rows ``{"id", "human", "judge"}`` (five criteria each) in sample order."""
    return [{"id": item.id, "human": {n: scores[item.id]["scores"].get(n, "") for n in CRITERIA},
             "judge": dict(item.verdict)} for item in items if item.id in scores]


def write_scores(review_dir: Path, reviewer: str, rows: list[dict[str, Any]]) -> Path:
    """``review/judge_scores/<reviewer>.jsonl``, replaced atomically (derived from the log)."""
    path = review_dir / SCORES_DIR / f"{reviewer}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def per_criterion(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Share of items on which reviewer and judge give the same value, per criterion."""
    if not rows:
        return {}
    return {name: sum((r["human"].get(name) == YES) == (r["judge"].get(name) == YES) for r in rows) / len(rows)
            for name in CRITERIA}


def reviewer_agreement(review_dir: Path, reviewer: str, rows: list[dict[str, Any]], min_items: int,
                       plot: bool = True) -> dict[str, Any] | None:
    """The agreement statistics of a reviewer's rows (written to ``review/agreement/<reviewer>/``
    like ``mede2 agreement`` does), or None below ``min_items``."""
    from mede2_plugin.evaluate.agreement import agreement, score_value, write_agreement

    if len(rows) < max(min_items, 1):
        return None
    human = {r["id"]: score_value(r["human"], r["id"]) for r in rows}
    judge = {r["id"]: score_value(r["judge"], r["id"]) for r in rows}
    stats, items = agreement(human, judge)
    written = write_agreement(review_dir / AGREEMENT_DIR / reviewer, stats, items, plot=plot)
    return {**stats.to_dict(), "files": {k: str(v) for k, v in written.items()}}
