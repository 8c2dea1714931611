"""Inference-time scaling (paper Figure 5): pass@n and majority-vote@n from k samples per question.

Both are exact expectations over the ``C(k, n)`` ways of choosing n of the k samples, so they
need no random seed and use every sample:

* **pass@n** - the unbiased estimator of Chen et al. (2021): ``1 - C(k - c, n) / C(k, n)`` with
  ``c`` correct samples out of ``k``.
* **majority-vote@n** - the probability that the correct letter wins the plurality vote of a
  random n-subset. Unparseable samples (no letter) do not vote; ties between the top letters are
  broken uniformly at random (the correct letter in a two-way tie counts 1/2); a subset with no
  vote at all is wrong. At ``n = k`` this is plain majority voting over all samples.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from collections.abc import Sequence
from math import comb
from pathlib import Path
from typing import Any

from mede2_plugin.core.files import atomic_writer


def have_matplotlib() -> bool:
    """Whether plots can be drawn; without matplotlib the CSVs are still written."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def sample_sizes(k: int) -> list[int]:
    """1, 2, 4, ... up to k (k itself included even when not a power of two)."""
    sizes, n = [], 1
    while n < k:
        sizes.append(n)
        n *= 2
    return sizes + [k]


def pass_at_n(num_samples: int, num_correct: int, n: int) -> float:
    """Unbiased pass@n from ``num_correct`` correct out of ``num_samples`` samples."""
    if not 0 < n <= num_samples:
        raise ValueError(f"need 0 < n <= samples, got n={n}, samples={num_samples}")
    if not 0 <= num_correct <= num_samples:
        raise ValueError(f"correct count {num_correct} outside 0..{num_samples}")
    return 1.0 - comb(num_samples - num_correct, n) / comb(num_samples, n)


def majority_at_n(letters: Sequence[str | None], answer: str, n: int) -> float:
    """Expected majority-vote accuracy over random n-subsets of ``letters`` (None: unparseable)."""
    total = len(letters)
    if not 0 < n <= total:
        raise ValueError(f"need 0 < n <= samples, got n={n}, samples={total}")
    votes = Counter(letter for letter in letters if letter is not None)
    right = votes.pop(answer, 0)
    others = list(votes.values())
    silent = total - right - sum(others)
    favourable = 0.0
    for drawn_right in range(1, min(right, n) + 1):
        # ways to draw from the other letters with none above drawn_right, by (drawn, tied)
        states: dict[tuple[int, int], int] = {(0, 0): 1}
        for count in others:
            following: dict[tuple[int, int], int] = defaultdict(int)
            for (drawn, tied), ways in states.items():
                for take in range(min(count, drawn_right, n - drawn_right - drawn) + 1):
                    following[(drawn + take, tied + (take == drawn_right))] += ways * comb(count, take)
            states = following
        for (drawn, tied), ways in states.items():
            rest = n - drawn_right - drawn
            favourable += comb(right, drawn_right) * ways * comb(silent, rest) / (tied + 1)
    return favourable / comb(total, n)


def scaling_curve(per_question: Sequence[tuple[Sequence[str | None], str]], k: int | None = None
                  ) -> list[dict[str, Any]]:
    """Mean pass@n and majority-vote@n over questions for n = 1, 2, 4, ..., k.

    Args:
        per_question: ``(letters of the samples, correct letter)`` per question.
        k: the largest n; default the smallest sample count among the questions. Questions with
            fewer than n samples (failed requests) are left out of that n's mean.
    """
    counts = [len(letters) for letters, _ in per_question if letters]
    if not counts:
        return []
    k = k or min(counts)
    rows = []
    for n in sample_sizes(k):
        usable = [(letters, answer) for letters, answer in per_question if len(letters) >= n]
        if not usable:
            continue
        passes = [pass_at_n(len(letters), sum(letter == answer for letter in letters), n) for letters, answer in usable]
        majorities = [majority_at_n(letters, answer, n) for letters, answer in usable]
        rows.append({"n": n, "pass_at_n": sum(passes) / len(usable),
                     "majority_at_n": sum(majorities) / len(usable), "questions": len(usable)})
    return rows


def write_curve_csv(path: str | Path, curves: dict[str, dict[str, list[dict[str, Any]]]]) -> Path:
    """CSV rows ``benchmark, model, n, pass_at_n, majority_at_n, questions`` (accuracies in %)."""
    path = Path(path)
    with atomic_writer(path, text=True) as handle:
        writer = csv.writer(handle)
        writer.writerow(["benchmark", "model", "n", "pass_at_n", "majority_at_n", "questions"])
        for benchmark, models in curves.items():
            for model, rows in models.items():
                for row in rows:
                    writer.writerow([benchmark, model, row["n"], f"{100 * row['pass_at_n']:.2f}",
                                     f"{100 * row['majority_at_n']:.2f}", row["questions"]])
    return path


def plot_curves(path: str | Path, curves: dict[str, dict[str, list[dict[str, Any]]]],
                titles: dict[str, str] | None = None) -> Path:
    """A Figure-5-like PNG: one panel per benchmark, pass@n (solid) and MV@n (dashed) per model.

    Needs matplotlib (``pip install 'mede2-plugin[plot]'``); see :func:`have_matplotlib`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    benchmarks = list(curves)
    figure, axes = plt.subplots(len(benchmarks), 1, figsize=(6.4, 3.6 * max(1, len(benchmarks))), squeeze=False)
    for axis, benchmark in zip(axes[:, 0], benchmarks):
        for index, (model, rows) in enumerate(curves[benchmark].items()):
            color = f"C{index}"
            ns = [row["n"] for row in rows]
            axis.plot(ns, [100 * row["pass_at_n"] for row in rows], "-o", color=color, markersize=3,
                      label=f"{model} Pass@n")
            axis.plot(ns, [100 * row["majority_at_n"] for row in rows], "--s", color=color, markersize=3,
                      label=f"{model} MV@n")
        axis.set_xscale("log", base=2)
        all_ns = sorted({row["n"] for rows in curves[benchmark].values() for row in rows})
        axis.set_xticks(all_ns, [str(n) for n in all_ns])
        axis.set_xlabel("number of samples n")
        axis.set_ylabel("accuracy (%)")
        axis.set_title((titles or {}).get(benchmark, benchmark))
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
