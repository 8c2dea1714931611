"""pass@n and majority-vote@n against brute force over every n-subset of the samples."""

from __future__ import annotations

import csv
import itertools
import random
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest

from mede2_plugin.evaluate.scaling import (
    majority_at_n,
    pass_at_n,
    plot_curves,
    sample_sizes,
    scaling_curve,
    write_curve_csv,
)


def brute_pass(correct_flags: list[bool], n: int) -> Fraction:
    subsets = list(itertools.combinations(correct_flags, n))
    return Fraction(sum(any(s) for s in subsets), len(subsets))


def brute_majority(letters: list[str | None], answer: str, n: int) -> Fraction:
    total = Fraction(0)
    subsets = list(itertools.combinations(letters, n))
    for subset in subsets:
        votes = Counter(x for x in subset if x is not None)
        if not votes:
            continue
        top = max(votes.values())
        winners = [letter for letter, count in votes.items() if count == top]
        if answer in winners:
            total += Fraction(1, len(winners))
    return total / len(subsets)


@pytest.mark.parametrize("samples,correct", [(1, 0), (1, 1), (4, 1), (5, 3), (8, 0), (8, 8), (10, 4)])
def test_pass_at_n_matches_brute_force(samples: int, correct: int) -> None:
    flags = [True] * correct + [False] * (samples - correct)
    for n in range(1, samples + 1):
        assert pass_at_n(samples, correct, n) == pytest.approx(float(brute_pass(flags, n)), abs=1e-12)


def test_majority_matches_brute_force_on_random_cases() -> None:
    rng = random.Random(1234)
    for _ in range(150):
        k = rng.randint(1, 10)
        letters = [rng.choice(["A", "B", "C", "D", None]) for _ in range(k)]
        n = rng.randint(1, k)
        assert majority_at_n(letters, "A", n) == pytest.approx(float(brute_majority(letters, "A", n)), abs=1e-12)


@pytest.mark.parametrize("letters,answer,n,expected", [
    (["A", "A", "B"], "A", 3, 1.0),
    (["A", "B"], "A", 2, 0.5),                 # two-way tie: half
    (["A", "B", "C"], "A", 3, 1 / 3),
    ([None, None, "A"], "A", 3, 1.0),           # unparseable samples do not vote
    ([None, None], "A", 1, 0.0),                # nobody voted: wrong
    (["B", "B", "A"], "A", 1, 1 / 3),           # n = 1 is the plain accuracy
])
def test_majority_small_cases(letters: list[str | None], answer: str, n: int, expected: float) -> None:
    assert majority_at_n(letters, answer, n) == pytest.approx(expected)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        pass_at_n(4, 1, 5)
    with pytest.raises(ValueError):
        pass_at_n(4, 5, 1)
    with pytest.raises(ValueError):
        majority_at_n(["A"], "A", 0)


def test_sample_sizes() -> None:
    assert sample_sizes(1) == [1]
    assert sample_sizes(32) == [1, 2, 4, 8, 16, 32]
    assert sample_sizes(6) == [1, 2, 4, 6]


def test_curve_means_over_questions_and_skips_short_ones(tmp_path: Path) -> None:
    questions = [(["A", "B", "A", "A"], "A"), (["C", None, "C", "D"], "D"), (["A"], "A")]
    curve = scaling_curve(questions, k=4)
    assert [row["n"] for row in curve] == [1, 2, 4]
    assert [row["questions"] for row in curve] == [3, 2, 2]
    first = (3 / 4 + 1 / 4 + 1) / 3
    assert curve[0]["pass_at_n"] == pytest.approx(first) and curve[0]["majority_at_n"] == pytest.approx(first)
    assert curve[-1]["pass_at_n"] == pytest.approx(1.0)
    assert curve[-1]["majority_at_n"] == pytest.approx((1 + 0) / 2)
    assert all(a["pass_at_n"] <= b["pass_at_n"] for a, b in zip(curve, curve[1:]))

    path = write_curve_csv(tmp_path / "s.csv", {"bench": {"m0": curve, "m1": curve[:1]}})
    rows = list(csv.DictReader(path.open()))
    assert [(r["model"], r["n"]) for r in rows] == [("m0", "1"), ("m0", "2"), ("m0", "4"), ("m1", "1")]
    assert rows[-2]["majority_at_n"] == "50.00"
    png = plot_curves(tmp_path / "s.png", {"bench": {"m0": curve}, "other": {"m0": curve}})
    assert png.read_bytes()[:4] == b"\x89PNG"
