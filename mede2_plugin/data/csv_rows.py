"""Reading CSV/TSV banks row by row, with the line each row starts on and unbalanced quotes caught.

A quote opened in a field and never closed makes a CSV parser read on into the following rows,
which then vanish inside one long field (or come back as a garbled row far below). Rows are
parsed in ``strict`` mode; a row that breaks the quoting rules, or that spans several lines and
has the wrong number of fields, is rejected naming the line it starts on, and reading resumes on
the very next line, so the rows it swallowed are read again (and kept when they are valid).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mede2_plugin.data.common import BankError, LoadResult, read_text


def _physical_lines(text: str) -> list[str]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line + "\n" for line in lines]


def iter_csv_rows(path: Path, result: LoadResult, delimiter: str = ",",
                  required: str | None = None) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """Yield ``(index, "line N", row)`` for each record; malformed records go to ``result.rejected``.

    ``index`` counts records from 0 (rejected ones included, so ids stay those of the file's row
    order); ``N`` is the line the record starts on (the header is line 1). ``required`` names a
    column the header must have.
    """
    lines = _physical_lines(read_text(path))
    if not lines:
        raise BankError(f"{path}: empty file")
    header = next(csv.reader([lines[0]], delimiter=delimiter))
    if required is not None and required not in header:
        raise BankError(f"{path}: no {required!r} column in the header {header}")
    index = 0
    position = 1  # 0-based index into lines of the next record's first line
    while position < len(lines):
        reader = csv.reader(iter(lines[position:]), delimiter=delimiter, strict=True)
        consumed = 0
        resync = None
        try:
            for fields in reader:
                start = position + consumed + 1  # 1-based line number
                span = reader.line_num - consumed
                consumed = reader.line_num
                if not fields:
                    continue
                while len(fields) > len(header) and not fields[-1].strip():
                    fields.pop()  # trailing empty cells (a trailing delimiter)
                if len(fields) != len(header):
                    reason = f"has {len(fields)} field(s), the header has {len(header)}"
                    if span > 1:
                        resync = (start, _swallowed(start, span, reason))
                        break
                    result.reject(path, f"line {start}", reason)
                    index += 1
                    continue
                yield index, f"line {start}", dict(zip(header, fields))
                index += 1
        except csv.Error as err:
            start = position + consumed + 1
            resync = (start, f"a quote opened on this line is not closed where it should be ({err}); "
                             f"fix the quoting of this row (the rows after it were read on their own)")
        if resync is None:
            break
        start, reason = resync
        result.reject(path, f"line {start}", f"unbalanced quote: {reason}")
        index += 1
        position = start  # the line after the bad record's first line


def _swallowed(start: int, span: int, reason: str) -> str:
    return (f"the record starting here runs over lines {start}-{start + span - 1} and {reason}; a quote "
            f"opened on line {start} seems never closed (the rows after it were read on their own)")
