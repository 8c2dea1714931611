"""The leakage check: normalisation, shingles, MinHash, LSH bands, flags against real layouts."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from curate_helpers import FIXTURES, fixture_questions

from mede2_plugin.core.jsonl import read_jsonl
from mede2_plugin.core.questions import Question
from mede2_plugin.curate.config import LeakageConfig
from mede2_plugin.curate.leakage import (
    LeakageIndex,
    MinHasher,
    choose_bands,
    jaccard,
    normalise,
    question_text,
    run_leakage,
    shingles,
)
from mede2_plugin.data.source import BankSource


def q(qid: str, text: str, options=None) -> Question:
    return Question(id=qid, source="t", question=text, options=options or {"A": "yes", "B": "no"}, answer="A")


def test_normalise_and_shingles():
    assert normalise("A 23-Year-Old  WOMAN’s rash (malar)!") == "a 23 year old woman s rash malar"
    assert normalise("ﬁbrosis") == "fibrosis"  # NFKC ligature
    assert shingles("one two three", 5) == frozenset({"one two three"})
    assert shingles("a b c d", 2) == frozenset({"a b", "b c", "c d"})
    assert shingles("!!!", 3) == frozenset()


def test_choose_bands_finds_pairs_at_the_threshold_with_high_probability():
    for threshold in (0.3, 0.5, 0.7, 0.9):
        bands, rows = choose_bands(128, threshold)
        assert bands * rows <= 128
        assert 1 - (1 - threshold ** rows) ** bands >= 0.99
        # and is as selective as it can be: one more row per band would miss the target
        more = rows + 1
        assert 1 - (1 - threshold ** more) ** (128 // more) < 0.99


def test_minhash_estimates_jaccard():
    rng = random.Random(0)
    vocabulary = [f"w{i}" for i in range(400)]
    hasher = MinHasher(256, seed=3)
    for _ in range(5):
        a = frozenset(rng.sample(vocabulary, 120))
        b = frozenset(list(a)[:80] + rng.sample(vocabulary, 40))
        estimate = float((hasher.signature(a) == hasher.signature(b)).mean())
        assert abs(estimate - jaccard(a, b)) < 0.12


def test_index_flags_copies_and_near_copies_but_not_unrelated():
    index = LeakageIndex(ngram=5, threshold=0.5)
    base = ("A 34-year-old man presents with crushing substernal chest pain radiating to the left arm for two hours "
            "after shovelling snow. Which is the most likely diagnosis?")
    index.add("bench", q("b1", base))
    index.add("bench", q("b2", "Which vitamin deficiency causes scurvy in sailors on long voyages?"))
    exact = index.best_match(q("t1", base.upper().replace(".", " ;")))
    assert exact.exact and exact.jaccard == 1.0 and exact.benchmark_id == "b1"
    near = index.best_match(q("t2", base.replace("two hours", "three hours")))
    assert near.benchmark_id == "b1" and 0.5 <= near.jaccard < 1.0
    assert index.best_match(q("t3", "Which nerve is injured in wrist drop after a humeral shaft fracture?")) is None


def test_run_leakage_on_public_layouts_flags_and_drops(tmp_path: Path):
    questions = fixture_questions()
    cfg = LeakageConfig(benchmarks=[BankSource(str(FIXTURES / "eval_medqa_test.jsonl"), "medqa"),
                                    BankSource(str(FIXTURES / "eval_medxpertqa_mm.jsonl"), "medxpertqa")])
    report = run_leakage(questions, cfg, tmp_path)
    assert report.input == len(questions) and report.kept == len(questions) - 1
    assert report.dropped == {"leaked": 1} and report.model_calls == 0
    assert report.extra["benchmarks"] == {"eval_medqa_test.jsonl": 2, "eval_medxpertqa_mm.jsonl": 1}
    records = {r["id"]: r for r in read_jsonl(tmp_path / "records.jsonl")}
    assert records["t5"]["leaked"] and records["t5"]["match"]["id"] == "medqa-eval_medqa_test-0"
    assert records["t5"]["match"]["jaccard"] >= 0.5
    kept = [json.loads(line)["id"] for line in (tmp_path / "kept.jsonl").read_text().splitlines()]
    assert "t5" not in kept and len(kept) == len(questions) - 1
    # flag only: kept, but still marked
    report = run_leakage(questions, LeakageConfig(benchmarks=cfg.benchmarks, drop=False), tmp_path)
    assert report.kept == len(questions) and report.extra["flagged"] == 1
    # a stricter threshold lets the near copy through
    report = run_leakage(questions, LeakageConfig(benchmarks=cfg.benchmarks, threshold=0.9), tmp_path)
    assert report.extra["flagged"] == 0


def test_options_count_in_the_compared_text():
    stem = "Which of the following is the best initial treatment for this patient with the findings described?"
    first = q("a", stem, {"A": "Intravenous alteplase within the window", "B": "Aspirin and clopidogrel"})
    second = q("b", stem, {"A": "Oral amoxicillin for ten days", "B": "Topical mupirocin ointment twice daily"})
    assert normalise(question_text(first, False)) == normalise(question_text(second, False))
    with_options = LeakageIndex(threshold=0.9)
    with_options.add("bench", first)
    match = with_options.best_match(second)
    assert match is None or match.jaccard < 0.9
    stem_only = LeakageIndex(threshold=0.9, include_options=False)
    stem_only.add("bench", first)
    assert stem_only.best_match(second).exact


def test_no_benchmarks_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ValueError, match="no evaluation benchmarks"):
        run_leakage(fixture_questions(), LeakageConfig(), tmp_path)
