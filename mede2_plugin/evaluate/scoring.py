"""Scoring generations: letters by the shared extractor, accuracy overall and per split.

Accuracy is the mean, over answered questions, of the share of a question's samples that chose
the right letter (with one sample: plain accuracy; with k: the expected single-sample accuracy,
i.e. pass@1). An unparseable sample (``extract_choice`` gives None) is wrong and is counted in
``unparseable``; it is never mapped to a letter. Questions without generations (request failed or
not run yet) are left out of the accuracy and counted in ``missing``; ``complete`` is False then.

Outputs scored (evaluated models: our M0/M1/M2 on the local, vLLM or an OpenAI-compatible
backend, and API baselines): ``<think>..</think><answer>\\boxed{B}</answer>``; the think part
returned apart by a reasoning parser (the text is then ``<answer>..</answer>`` alone); Gemini
thoughts apart; o1-style plain answers ("The answer is B", the option text); ``\\boxed{B. text}``,
``\\boxed{\\text{B}}``. A sample cut off inside ``<think>`` is unparseable and ``truncated``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from mede2_plugin.core.answers import extract_choice, is_truncated
from mede2_plugin.core.questions import Question
from mede2_plugin.evaluate.benchmarks import split_value


@dataclass
class QuestionScore:
    """One question's samples, scored.

    Attributes:
        id: question id.
        answer: the correct letter.
        letters: the letter each sample chose (None: unparseable).
        truncated: per sample, whether the output was cut off.
        splits: split field -> value for this question.
        error: why there are no samples (request error, or ``missing``), else None.
    """

    id: str
    answer: str
    letters: list[str | None] = field(default_factory=list)
    truncated: list[bool] = field(default_factory=list)
    splits: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def answered(self) -> bool:
        return bool(self.letters)

    @property
    def correct(self) -> int:
        return sum(letter == self.answer for letter in self.letters)

    @property
    def accuracy(self) -> float:
        return self.correct / len(self.letters) if self.letters else 0.0

    @property
    def unparseable(self) -> int:
        return sum(letter is None for letter in self.letters)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "correct": self.correct, "accuracy": self.accuracy}


def score_question(question: Question, row: dict[str, Any] | None, split_fields: Sequence[str] = ()) -> QuestionScore:
    """Score one question from its client result row (None when there is none yet)."""
    splits = {name: split_value(question, name) for name in split_fields}
    if question.answer is None:
        raise ValueError(f"question {question.id} has no answer: it cannot be scored")
    if row is None or row.get("error") or not row.get("samples"):
        error = "missing" if row is None else (row.get("error") or "no samples")
        return QuestionScore(question.id, question.answer, splits=splits, error=error)
    samples = row["samples"]
    return QuestionScore(
        question.id, question.answer,
        letters=[extract_choice(s.get("text") or "", question.options) for s in samples],
        truncated=[is_truncated(s.get("text") or "", s.get("finish_reason")) for s in samples],
        splits=splits)


def summarise(scores: Iterable[QuestionScore]) -> dict[str, Any]:
    """Counts and accuracy of a group of questions (accuracy as a fraction, 0..1)."""
    scores = list(scores)
    answered = [s for s in scores if s.answered]
    samples = sum(len(s.letters) for s in answered)
    unparseable = sum(s.unparseable for s in answered)
    return {
        "questions": len(scores),
        "answered": len(answered),
        "missing": len(scores) - len(answered),
        "samples": samples,
        "correct_samples": sum(s.correct for s in answered),
        "accuracy": sum(s.accuracy for s in answered) / len(answered) if answered else None,
        "unparseable": unparseable,
        "unparseable_rate": unparseable / samples if samples else None,
        "truncated": sum(sum(s.truncated) for s in answered),
    }


def accuracy_table(scores: Sequence[QuestionScore], split_fields: Sequence[str] = ()) -> dict[str, Any]:
    """Overall summary plus one summary per value of each split field."""
    table = summarise(scores)
    table["complete"] = table["missing"] == 0
    table["splits"] = {}
    for name in split_fields:
        groups: dict[str, list[QuestionScore]] = {}
        for score in scores:
            groups.setdefault(score.splits.get(name, "unknown"), []).append(score)
        table["splits"][name] = {value: summarise(group) for value, group in sorted(groups.items())}
    return table
