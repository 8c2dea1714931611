"""What every question-bank loader returns: accepted questions plus the rows it rejected, and why."""

from __future__ import annotations

import re
import string
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mede2_plugin.core.questions import Question

LETTERS = string.ascii_uppercase


class BankError(ValueError):
    """A bank that cannot be read at all, or (in strict mode) one with rejected rows."""


@dataclass
class Rejected:
    """A row a loader refused, with where it was and why.

    Attributes:
        file: the file the row came from.
        record: where in the file: ``"line 12"`` (JSONL, CSV: the row's first line), ``"row 3"``
            (parquet, column-oriented JSON), ...
        reason: why it was refused, in words.
        id: the row's original id when it has one.
    """

    file: str
    record: str
    reason: str
    id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        where = f"{self.file}:{self.record}" + (f" ({self.id})" if self.id else "")
        return f"{where}: {self.reason}"


@dataclass
class LoadResult:
    """Questions a loader accepted, rows it rejected, and rows it skipped on purpose.

    Iterating over it (or ``len``) goes over the accepted questions.

    Attributes:
        questions: the accepted questions, in file order.
        rejected: malformed or inconsistent rows, each with file, record and reason.
        skipped: rows left out by a selection rather than an error (e.g. MMMU subjects outside
            health), as ``reason -> count``.
    """

    questions: list[Question] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def __iter__(self):
        return iter(self.questions)

    def __len__(self) -> int:
        return len(self.questions)

    def extend(self, other: LoadResult) -> None:
        self.questions.extend(other.questions)
        self.rejected.extend(other.rejected)
        for reason, count in other.skipped.items():
            self.skip(reason, count)

    def reject(self, file: str | Path, record: str, reason: str | Exception, id: Any = None) -> None:
        """Refuse a row: its file, where in the file (``"line 12"``), why, and its original id if known."""
        self.rejected.append(Rejected(str(file), record, str(reason), id))

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + count

    def summary(self) -> dict[str, Any]:
        """Counts for a stage report: accepted, rejected (with reasons), skipped."""
        reasons: dict[str, int] = {}
        for row in self.rejected:
            reasons[row.reason] = reasons.get(row.reason, 0) + 1
        return {"accepted": len(self.questions), "rejected": len(self.rejected),
                "rejected_reasons": reasons, "skipped": dict(self.skipped)}


class RowError(ValueError):
    """Raised inside a loader for one bad row; the loader turns it into a :class:`Rejected`."""


def clean_text(value: Any, name: str) -> str:
    """A required non-empty string field."""
    if not isinstance(value, str) or not value.strip():
        raise RowError(f"{name} is missing or empty")
    return value.strip()


def options_from_list(values: list[Any], name: str = "options") -> dict[str, str]:
    """``["x", "y"]`` -> ``{"A": "x", "B": "y"}``."""
    if len(values) > len(LETTERS):
        raise RowError(f"{name} has {len(values)} entries, more than {len(LETTERS)}")
    return {LETTERS[i]: str(v).strip() for i, v in enumerate(values)}


def check_options(options: Any, minimum: int = 2) -> dict[str, str]:
    """Options as ``{letter: text}``: letters A, B, C... in order, texts non-empty."""
    if not isinstance(options, dict):
        raise RowError(f"options must be a mapping of letters to texts, got {type(options).__name__}")
    if len(options) < minimum:
        raise RowError(f"only {len(options)} option(s), need at least {minimum}")
    letters = list(options)
    expected = list(LETTERS[: len(letters)])
    if [str(k).strip().upper() for k in letters] != expected:
        raise RowError(f"option letters {letters} are not {expected}")
    result: dict[str, str] = {}
    for letter, text in zip(expected, options.values()):
        if text is None or not str(text).strip():
            raise RowError(f"option {letter} is empty")
        result[letter] = str(text).strip()
    return result


def check_answer(answer: Any, options: dict[str, str], answer_text: Any = None) -> str:
    """The answer letter, which must be one of the options; ``answer_text`` (if given) must match it."""
    if isinstance(answer, list):
        if len(answer) != 1:
            raise RowError(f"expected exactly one answer letter, got {answer!r}")
        answer = answer[0]
    if not isinstance(answer, str) or not answer.strip():
        raise RowError("answer letter is missing")
    letter = answer.strip().upper()
    if letter not in options:
        raise RowError(f"answer {answer!r} is not one of the options {list(options)}")
    if answer_text is not None and normalise(str(answer_text)) != normalise(options[letter]):
        raise RowError(f"answer text {str(answer_text)[:80]!r} differs from option {letter} "
                       f"{options[letter][:80]!r}")
    return letter


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


FIGURE_MENTION = re.compile(r"\bFigures?\s+[A-Z]\b")


def mentions_figure(text: str) -> bool:
    """Whether the text refers to a figure ("Figure A", "Figures A and B")."""
    return bool(FIGURE_MENTION.search(text))


def read_text(path: Path) -> str:
    """The file's text (UTF-8, a BOM allowed); not UTF-8 is a :class:`BankError` naming the line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise BankError(f"{path}:line {line}: not UTF-8 text (byte {data[err.start]:#04x} at offset "
                        f"{err.start}); convert the file to UTF-8") from None
