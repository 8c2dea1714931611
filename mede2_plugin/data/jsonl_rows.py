"""Reading JSONL banks row by row, turning unparsable lines into rejected rows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mede2_plugin.data.common import LoadResult, read_text


def iter_json_lines(path: Path, result: LoadResult) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """Yield ``(index, line number, object)``; bad JSON or non-objects go to ``result.rejected``.

    ``index`` counts non-blank lines from 0 (the row number ids are built from).
    """
    text = read_text(path)
    index = 0
    for number, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        current = index
        index += 1
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as err:
            result.reject(path, f"line {number}", f"not valid JSON ({err.msg})")
            continue
        if not isinstance(row, dict):
            result.reject(path, f"line {number}", f"expected a JSON object, got {type(row).__name__}")
            continue
        yield current, number, row
