"""Leakage check: flag training questions that overlap an evaluation benchmark question.

Plain MinHash with LSH banding (numpy only), followed by the exact Jaccard similarity of the
candidate pairs, so the flag itself never depends on hashing luck:

1. :func:`normalise` the text (NFKC, case folded, punctuation dropped, whitespace collapsed) and
   cut it into word n-gram shingles (:func:`shingles`);
2. :class:`MinHasher` turns a shingle set into a ``num_perm`` signature;
3. :class:`LeakageIndex` buckets benchmark signatures by bands; a training question's candidates
   are the benchmark questions sharing a band, and its score is the best exact Jaccard among them.

The bands are chosen by :func:`choose_bands` so that a pair at exactly the threshold becomes a
candidate with probability at least 0.99; higher similarities are found even more surely.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mede2_plugin.core.questions import Question
from mede2_plugin.core.steps import KEPT, StepReport, write_step_outputs
from mede2_plugin.curate.config import CurateConfig, LeakageConfig

MERSENNE_PRIME = np.uint64((1 << 61) - 1)
MAX_HASH = np.uint64((1 << 32) - 1)
_PUNCTUATION = re.compile(r"[^\w\s]|_", re.UNICODE)


def normalise(text: str) -> str:
    """Unicode NFKC, case folded, punctuation removed, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_PUNCTUATION.sub(" ", text).split())


def question_text(question: Question, include_options: bool = True) -> str:
    """The text compared: patient information, stem and (optionally) the option texts."""
    parts = [question.patient_info, question.question]
    if include_options:
        parts += [str(v) for v in question.options.values()]
    return " ".join(p for p in parts if p)


def shingles(text: str, n: int) -> frozenset[str]:
    """Word ``n``-grams of the normalised text; a shorter text is a single shingle."""
    words = normalise(text).split()
    if not words:
        return frozenset()
    if len(words) <= n:
        return frozenset([" ".join(words)])
    return frozenset(" ".join(words[i:i + n]) for i in range(len(words) - n + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def choose_bands(num_perm: int, threshold: float, recall: float = 0.99) -> tuple[int, int]:
    """``(bands, rows)`` with the most rows per band such that a pair of Jaccard ``threshold``
    shares at least one band with probability >= ``recall`` (``1 - (1 - t^r)^b``)."""
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if 1 - (1 - threshold ** rows) ** bands >= recall:
            return bands, rows
    return num_perm, 1


class MinHasher:
    """MinHash signatures with ``num_perm`` universal hash functions ``(a*x + b) mod p``."""

    def __init__(self, num_perm: int = 128, seed: int = 1) -> None:
        rng = np.random.RandomState(seed)
        self.num_perm = num_perm
        self.a = rng.randint(1, int(MERSENNE_PRIME), size=num_perm, dtype=np.uint64)
        self.b = rng.randint(0, int(MERSENNE_PRIME), size=num_perm, dtype=np.uint64)

    @staticmethod
    def hash_shingle(shingle: str) -> int:
        return int.from_bytes(hashlib.blake2b(shingle.encode("utf-8"), digest_size=4).digest(), "little")

    def signature(self, items: Iterable[str]) -> np.ndarray:
        values = np.array([self.hash_shingle(s) for s in items], dtype=np.uint64)
        if values.size == 0:
            return np.full(self.num_perm, MAX_HASH, dtype=np.uint64)
        with np.errstate(over="ignore"):
            permuted = (values[:, None] * self.a[None, :] + self.b[None, :]) % MERSENNE_PRIME
        return (permuted & MAX_HASH).min(axis=0)


@dataclass
class Match:
    """The best benchmark match of a training question."""

    benchmark: str
    benchmark_id: str
    jaccard: float
    exact: bool


class LeakageIndex:
    """Benchmark questions indexed for similarity queries.

    Args:
        ngram: words per shingle.
        num_perm: MinHash hash functions.
        threshold: the Jaccard similarity that must be found (sets the LSH bands).
        include_options: compare option texts too.
        seed: hash seed.
    """

    def __init__(self, ngram: int = 5, num_perm: int = 128, threshold: float = 0.5,
                 include_options: bool = True, seed: int = 1) -> None:
        self.ngram = ngram
        self.include_options = include_options
        self.hasher = MinHasher(num_perm, seed)
        self.bands, self.rows = choose_bands(num_perm, threshold)
        self.buckets: list[dict[bytes, list[int]]] = [defaultdict(list) for _ in range(self.bands)]
        self.exact: dict[str, list[int]] = defaultdict(list)
        self.entries: list[tuple[str, str, frozenset[str]]] = []

    def _bands(self, signature: np.ndarray) -> list[bytes]:
        return [signature[i * self.rows:(i + 1) * self.rows].tobytes() for i in range(self.bands)]

    def add(self, benchmark: str, question: Question) -> None:
        text = question_text(question, self.include_options)
        items = shingles(text, self.ngram)
        index = len(self.entries)
        self.entries.append((benchmark, question.id, items))
        self.exact[normalise(text)].append(index)
        if items:
            for band, key in enumerate(self._bands(self.hasher.signature(items))):
                self.buckets[band][key].append(index)

    def best_match(self, question: Question) -> Match | None:
        """The most similar indexed question among the LSH candidates (exact text first)."""
        text = question_text(question, self.include_options)
        exact = self.exact.get(normalise(text))
        if exact and normalise(text):
            benchmark, question_id, _ = self.entries[exact[0]]
            return Match(benchmark, question_id, 1.0, True)
        items = shingles(text, self.ngram)
        if not items:
            return None
        candidates: set[int] = set()
        for band, key in enumerate(self._bands(self.hasher.signature(items))):
            candidates.update(self.buckets[band].get(key, ()))
        best: Match | None = None
        for index in sorted(candidates):
            benchmark, question_id, other = self.entries[index]
            score = jaccard(items, other)
            if best is None or score > best.jaccard:
                best = Match(benchmark, question_id, score, False)
        return best


def leakage_record(question: Question, match: Match | None, cfg: LeakageConfig) -> dict[str, Any]:
    leaked = match is not None and (match.exact or match.jaccard >= cfg.threshold - 1e-12)
    record: dict[str, Any] = {"id": question.id, "leaked": leaked,
                              "match": None if match is None else {
                                  "benchmark": match.benchmark, "id": match.benchmark_id,
                                  "jaccard": round(match.jaccard, 4), "exact": match.exact}}
    if leaked and cfg.drop:
        return {**record, "kept": False, "reason": "leaked"}
    return {**record, "kept": True, "reason": KEPT}


def build_index(cfg: LeakageConfig) -> tuple[LeakageIndex, dict[str, int]]:
    """Load every benchmark bank of ``cfg`` into an index; returns it with question counts."""
    index = LeakageIndex(cfg.ngram, cfg.num_perm, cfg.threshold, cfg.include_options, cfg.seed)
    counts: dict[str, int] = {}
    for source in cfg.benchmarks:
        result = source.load()
        for question in result.questions:
            index.add(source.label, question)
        counts[source.label] = len(result.questions)
    return index, counts


def run_leakage(questions: list[Question], cfg: LeakageConfig, step_dir: Path) -> StepReport:
    """Check every question against the benchmarks and write the step's outputs (no model call)."""
    if not cfg.benchmarks:
        raise ValueError("leakage: no evaluation benchmarks configured; list them under leakage.benchmarks or give "
                         "--eval-bank PATH:FORMAT (or leave 'leakage' out of steps)")
    index, counts = build_index(cfg)
    records = [leakage_record(q, index.best_match(q), cfg) for q in questions]
    by_benchmark: dict[str, int] = defaultdict(int)
    for record in records:
        if record["leaked"]:
            by_benchmark[record["match"]["benchmark"]] += 1
    extra = {"benchmarks": counts, "flagged": sum(1 for r in records if r["leaked"]),
             "flagged_by_benchmark": dict(by_benchmark), "threshold": cfg.threshold, "ngram": cfg.ngram,
             "num_perm": cfg.num_perm, "bands": index.bands, "rows_per_band": index.rows,
             "drop": cfg.drop, "candidate_recall_at_threshold":
                 round(1 - (1 - cfg.threshold ** index.rows) ** index.bands, 4)}
    return write_step_outputs(step_dir, "leakage", records, {q.id: q for q in questions}, [], extra)



def run_leakage_step(questions: list[Question], config: CurateConfig, step_dir: Path) -> StepReport:
    """The ``leakage`` step of ``mede2 curate`` (:func:`run_leakage` with the config's ``leakage``)."""
    return run_leakage(questions, config.leakage, step_dir)
