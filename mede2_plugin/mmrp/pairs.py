"""Preference pairs from judged candidates, under a pairing policy, for any judged-questions file.

A candidate is a *positive* when every required criterion is "Yes", a *negative* when any is
"No" (a pre-screened wrong answer has Answer_Correctness "No"), and *unjudged* otherwise; the
paper requires all five criteria. A *hard* negative has the right answer (Answer_Correctness
"Yes") but fails another criterion.

Pairing, per question, with a random generator seeded by ``(seed, question id)`` only, so one
question's pairs do not change when other questions are added or removed:

* positives are shuffled; negatives are shuffled and, with ``prefer_hard_negatives``, the hard
  ones are put first;
* ``positive_use="once"``: each positive is paired once, with the negatives in that order
  (cycling when there are more positives than negatives);
* ``positive_use="all"``: every positive x negative combination, in diagonal order (the first
  pairs use distinct positives and distinct negatives), hard negatives first when preferred;
* ``pairs_per_question`` cuts the list (None: no cap).

Pairs whose two texts are equal, and candidates holding an ``<image>`` token (which would break
LLaMA-Factory's image alignment), are left out and counted.

Any judged file works: one JSON object per line with ``id``, ``prompt`` (the user text, without
``<image>`` placeholders), ``images`` (paths), optional ``system``, and ``candidates``, each with
``index``, ``text`` and either a ``verdict`` (criterion -> "Yes" / "No" / "") or only a
``status`` (``positive`` / ``negative``; then the policy's ``criteria`` and hard negatives do
not apply). ``mede2 judge`` writes more fields (see :mod:`mede2_plugin.mmrp.judge`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mede2_plugin.core.chat_format import IMAGE_PLACEHOLDER
from mede2_plugin.core.dataset_info import merge_dataset_info
from mede2_plugin.core.files import atomic_write_json
from mede2_plugin.core.jsonl import read_jsonl, write_jsonl
from mede2_plugin.core.review_decisions import drop_flagged
from mede2_plugin.mmrp.criteria import (
    CRITERIA,
    classify,
    failed_criteria,
    is_hard_negative,
)

POSITIVE_USES = ("once", "all")
IMAGE_MODES = ("absolute", "copy")


@dataclass
class PairingPolicy:
    """How positives and negatives of a question become preference pairs.

    Attributes:
        pairs_per_question: most pairs per question (None: no cap).
        positive_use: ``once`` (each positive in at most one pair) or ``all`` (every positive x
            negative combination).
        prefer_hard_negatives: pair positives first with negatives that have the right answer but
            fail another criterion (they teach reasoning quality, not the answer).
        seed: seed of the per-question shuffles; the same seed gives the same pairs.
        criteria: the criteria a positive must pass (default: the paper's five); fewer criteria
            re-curate the same judged file without new judge calls.
    """

    pairs_per_question: int | None = None
    positive_use: str = "once"
    prefer_hard_negatives: bool = True
    seed: int = 0
    criteria: list[str] = field(default_factory=lambda: list(CRITERIA))

    def __post_init__(self) -> None:
        if self.positive_use not in POSITIVE_USES:
            raise ValueError(f"positive_use must be one of {POSITIVE_USES}, got {self.positive_use!r}")
        if self.pairs_per_question is not None and self.pairs_per_question < 1:
            raise ValueError(f"pairs_per_question must be >= 1 or None, got {self.pairs_per_question}")
        unknown = [c for c in self.criteria if c not in CRITERIA]
        if unknown or not self.criteria:
            raise ValueError(f"criteria must be a non-empty subset of {list(CRITERIA)}, got {self.criteria}")
        self.criteria = list(self.criteria)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, where: str = "pairing policy") -> PairingPolicy:
        """Build from a mapping (e.g. a ``dataset_info.json`` entry's ``mede2_pairing``); unknown keys are an error."""
        data = dict(data or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: {err}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Pair:
    """One preference pair of a question (indices are candidate indices)."""

    question_id: str
    chosen: int
    rejected: int
    rejected_hard: bool
    rejected_failed: list[str]

    @property
    def id(self) -> str:
        return f"{self.question_id}/c{self.chosen}-r{self.rejected}"


@dataclass
class QuestionPairs:
    """The positives, negatives and pairs of one question."""

    question_id: str
    positives: list[int]
    negatives: list[int]
    hard_negatives: list[int]
    unjudged: list[int]
    excluded: list[int]
    pairs: list[Pair]
    identical_skipped: int = 0


def _candidate_status(candidate: dict[str, Any], policy: PairingPolicy) -> str:
    verdict = candidate.get("verdict") or {}
    if not any(verdict.get(name) for name in CRITERIA):  # a file with statuses only
        status = candidate.get("status")
        return status if status in ("positive", "negative") else "unjudged"
    return classify(verdict, policy.criteria)


def _usable(candidate: dict[str, Any]) -> bool:
    text = candidate.get("text") or ""
    return bool(text.strip()) and IMAGE_PLACEHOLDER not in text


def _diagonal(n_pos: int, n_neg: int) -> list[tuple[int, int]]:
    """All (i, j) index pairs, ordered so each block of min(n_pos, n_neg) uses distinct i and j."""
    return [(i, (i + d) % n_neg) for d in range(n_neg) for i in range(n_pos)]


def question_pairs(row: dict[str, Any], policy: PairingPolicy) -> QuestionPairs:
    """Classify one judged question's candidates and build its pairs under ``policy``."""
    question_id = str(row["id"])
    candidates = {int(c["index"]): c for c in row.get("candidates") or []}
    positives, negatives, hard, unjudged, excluded = [], [], [], [], []
    for index, candidate in sorted(candidates.items()):
        status = _candidate_status(candidate, policy)
        if status == "unjudged":
            unjudged.append(index)
        elif not _usable(candidate):
            excluded.append(index)
        elif status == "positive":
            positives.append(index)
        else:
            negatives.append(index)
            if is_hard_negative(candidate.get("verdict") or {}, policy.criteria):
                hard.append(index)
    rng = random.Random(f"{policy.seed}:{question_id}")
    pos = positives[:]
    rng.shuffle(pos)
    hard_set = set(hard)
    if policy.prefer_hard_negatives:
        first = [i for i in negatives if i in hard_set]
        rest = [i for i in negatives if i not in hard_set]
        rng.shuffle(first)
        rng.shuffle(rest)
        neg = first + rest
    else:
        neg = negatives[:]
        rng.shuffle(neg)

    combos: list[tuple[int, int]] = []
    if pos and neg:
        if policy.positive_use == "once":
            combos = [(p, neg[k % len(neg)]) for k, p in enumerate(pos)]
        else:
            combos = [(pos[i], neg[j]) for i, j in _diagonal(len(pos), len(neg))]
            if policy.prefer_hard_negatives:
                combos.sort(key=lambda pair: pair[1] not in hard_set)  # stable: diagonal order kept
    pairs, identical = [], 0
    for chosen, rejected in combos:
        if policy.pairs_per_question is not None and len(pairs) >= policy.pairs_per_question:
            break
        if candidates[chosen]["text"].strip() == candidates[rejected]["text"].strip():
            identical += 1
            continue
        pairs.append(Pair(question_id, chosen, rejected, rejected in hard_set,
                          failed_criteria(candidates[rejected].get("verdict") or {}, policy.criteria)))
    return QuestionPairs(question_id, positives, negatives, hard, unjudged, excluded, pairs, identical)


def load_judged(path: str | Path) -> list[dict[str, Any]]:
    """The latest judged row of each question, in file order; a row without candidates is an error."""
    latest: dict[str, dict[str, Any]] = {}
    for number, row in enumerate(read_jsonl(path, allow_torn_tail=True), start=1):
        if "id" not in row or not isinstance(row.get("candidates"), list):
            raise ValueError(f"{path}: record {number}: a judged question needs 'id' and a 'candidates' list")
        for key in ("prompt", "images"):
            if key not in row:
                raise ValueError(f"{path}: record {number} ({row['id']!r}): missing field {key!r}")
        latest[str(row["id"])] = row
    return list(latest.values())


def native_row(row: dict[str, Any], pair: Pair, images: list[str] | None = None) -> dict[str, Any]:
    """A ``mede2_pref`` record (our native preference format) for one pair."""
    candidates = {int(c["index"]): c for c in row["candidates"]}
    return {
        "id": pair.id,
        "question_id": pair.question_id,
        "system": row.get("system") or "",
        "prompt": row["prompt"],
        "images": list(row["images"] if images is None else images),
        "chosen": candidates[pair.chosen]["text"],
        "rejected": candidates[pair.rejected]["text"],
        "chosen_index": pair.chosen,
        "rejected_index": pair.rejected,
        "rejected_hard": pair.rejected_hard,
        "rejected_failed": pair.rejected_failed,
    }


def sharegpt_row(native: dict[str, Any]) -> dict[str, Any]:
    """The same pair in LLaMA-Factory's standard sharegpt ranking form."""
    prompt = native["prompt"]
    if IMAGE_PLACEHOLDER not in prompt:
        prompt = IMAGE_PLACEHOLDER * len(native["images"]) + prompt
    return {
        "id": native["id"],
        "system": native["system"],
        "conversations": [{"from": "human", "value": prompt}],
        "chosen": {"from": "gpt", "value": native["chosen"]},
        "rejected": {"from": "gpt", "value": native["rejected"]},
        "images": native["images"],
    }


@dataclass
class PairReport:
    """What the pair builder did, for the report file and the console."""

    policy: dict[str, Any]
    questions: int = 0
    pairs: int = 0
    pairs_with_hard_negative: int = 0
    positives: int = 0
    negatives: int = 0
    hard_negatives: int = 0
    unjudged: int = 0
    excluded_candidates: int = 0
    identical_pairs_skipped: int = 0
    incomplete_questions: list[str] = field(default_factory=list)
    questions_without_positive: list[str] = field(default_factory=list)
    questions_without_negative: list[str] = field(default_factory=list)
    questions_without_judged: list[str] = field(default_factory=list)
    pairs_per_question: dict[str, int] = field(default_factory=dict)
    flagged_dropped: list[str] = field(default_factory=list)  # [human review] flagged pairs left out
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def build_pairs(rows: Iterable[dict[str, Any]], policy: PairingPolicy | None = None,
                drop: dict[str, set[str]] | None = None) -> tuple[list[dict[str, Any]], PairReport]:
    """Native ``mede2_pref`` records of all pairs of judged rows, and the report. [human review]
    ``drop``: pairs flagged by reviewers (:func:`mede2_plugin.core.review_decisions.flagged_pairs`), left out."""
    policy = policy or PairingPolicy()
    report = PairReport(policy=policy.to_dict())
    records: list[dict[str, Any]] = []
    histogram: Counter[int] = Counter()
    for row in rows:
        report.questions += 1
        result = question_pairs(row, policy)
        report.positives += len(result.positives)
        report.negatives += len(result.negatives)
        report.hard_negatives += len(result.hard_negatives)
        report.unjudged += len(result.unjudged)
        report.excluded_candidates += len(result.excluded)
        report.identical_pairs_skipped += result.identical_skipped
        if row.get("complete") is False:
            report.incomplete_questions.append(result.question_id)
        if not result.positives and not result.negatives:
            report.questions_without_judged.append(result.question_id)
        else:
            if not result.positives:
                report.questions_without_positive.append(result.question_id)
            if not result.negatives:
                report.questions_without_negative.append(result.question_id)
        built = [native_row(row, pair) for pair in result.pairs]
        if drop:  # [human review] leave out the pairs a reviewer flagged
            built, dropped = drop_flagged(built, drop)
            report.flagged_dropped += dropped
        histogram[len(built)] += 1
        for record in built:
            records.append(record)
            report.pairs += 1
            report.pairs_with_hard_negative += int(record["rejected_hard"])
    report.pairs_per_question = {str(k): histogram[k] for k in sorted(histogram)}
    return records, report


def _copy_images(records: list[dict[str, Any]], out_dir: Path) -> None:
    """Copy every image into ``out_dir/images/`` (content-hash names) and point the records there."""
    image_dir = out_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    copied: dict[str, str] = {}
    for record in records:
        new_paths = []
        for path in record["images"]:
            if path not in copied:
                source = Path(path)
                if not source.is_file():
                    raise FileNotFoundError(f"pair {record['id']}: image not found: {path}")
                digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
                target = image_dir / f"{digest}{source.suffix.lower()}"
                if not target.exists():
                    shutil.copyfile(source, target)
                copied[path] = f"images/{target.name}"
            new_paths.append(copied[path])
        record["images"] = new_paths


def dataset_info_entries(name: str, native_file: str, sharegpt_file: str,
                         judged_file: str | None = None, policy: PairingPolicy | None = None) -> dict[str, Any]:
    """``dataset_info.json`` entries: ``name`` (mede2_pref), ``name_sharegpt`` and, with a judged
    file, ``name_judged`` (``mede2_judged``: pairs built at load time under ``mede2_pairing``)."""
    entries: dict[str, Any] = {
        name: {"file_name": native_file, "formatting": "mede2_pref", "ranking": True},
        f"{name}_sharegpt": {
            "file_name": sharegpt_file, "formatting": "sharegpt", "ranking": True,
            "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected",
                        "images": "images", "system": "system"},
        },
    }
    if judged_file is not None:
        entries[f"{name}_judged"] = {
            "file_name": judged_file, "formatting": "mede2_judged", "ranking": True,
            "mede2_pairing": (policy or PairingPolicy()).to_dict(),
        }
    return entries


def write_preference_dataset(judged: str | Path, out_dir: str | Path, policy: PairingPolicy | None = None,
                             name: str = "mede2_stage2", images: str = "absolute",
                             judged_entry: bool = True, drop: dict[str, set[str]] | None = None) -> PairReport:
    """Build pairs from a judged-questions file and write a LLaMA-Factory dataset folder.

    Writes ``<name>.jsonl`` (``mede2_pref``), ``<name>_sharegpt.jsonl`` (sharegpt ranking),
    ``<name>_pairs_report.json``, and merges the entries into ``out_dir/dataset_info.json``
    (``dataset_dir: out_dir`` in a recipe, ``dataset: <name>``).

    Args:
        judged: judged-questions JSONL (``mede2 judge`` output, or any file with that layout).
        out_dir: the dataset folder.
        policy: pairing policy.
        name: dataset name in ``dataset_info.json``.
        images: ``absolute`` (records keep absolute image paths) or ``copy`` (images copied into
            ``out_dir/images/``, records relative to it: a folder that can be moved as a whole).
        judged_entry: also add ``<name>_judged``, the ``mede2_judged`` entry over ``judged``.
        drop: [human review] pairs flagged by reviewers, left out (see :func:`build_pairs`).
    """
    if images not in IMAGE_MODES:
        raise ValueError(f"images must be one of {IMAGE_MODES}, got {images!r}")
    policy = policy or PairingPolicy()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records, report = build_pairs(load_judged(judged), policy, drop)
    if images == "copy":
        _copy_images(records, out_dir)
    native_file, sharegpt_file = f"{name}.jsonl", f"{name}_sharegpt.jsonl"
    write_jsonl(out_dir / native_file, records)
    write_jsonl(out_dir / sharegpt_file, (sharegpt_row(r) for r in records))
    judged_path = Path(judged).resolve()
    try:
        judged_ref = str(judged_path.relative_to(out_dir.resolve()))
    except ValueError:
        judged_ref = str(judged_path)
    # force: a rerun (e.g. with another policy) replaces this dataset's own entries; others are kept
    merge_dataset_info(out_dir, dataset_info_entries(name, native_file, sharegpt_file,
                                                     judged_ref if judged_entry else None, policy), force=True)
    report.files = {"native": str(out_dir / native_file), "sharegpt": str(out_dir / sharegpt_file),
                    "dataset_info": str(out_dir / "dataset_info.json"),
                    "report": str(out_dir / f"{name}_pairs_report.json")}
    atomic_write_json(out_dir / f"{name}_pairs_report.json", report.to_dict())
    return report
