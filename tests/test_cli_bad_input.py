"""Bad input to the commands besides ``mede2 batch`` (whose table is tests/test_client_bad_input.py):
one line naming the file (and line), exit 2, no traceback, and no file changed or half written.

Each case runs the real command in a subprocess.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Case:
    name: str
    prepare: Callable[[Path], list[str]]  # writes the bad input under the folder, returns the command's arguments
    expect: str  # a substring of the one error line ({tmp} is the folder)


def _register_malformed(tmp: Path) -> list[str]:
    (tmp / "proj").mkdir()
    (tmp / "proj" / "dataset_info.json").write_text('{"theirs": {"file_name": "a.json"},\n', encoding="utf-8")
    return ["register", "--dataset-dir", str(tmp / "proj")]


def _chat_template_malformed(tmp: Path) -> list[str]:
    (tmp / "tok").mkdir()
    (tmp / "tok" / "tokenizer_config.json").write_text('{"model_max_length": \n', encoding="utf-8")
    return ["chat-template", str(tmp / "tok")]


def _chat_template_missing(tmp: Path) -> list[str]:
    return ["chat-template", str(tmp / "no-such-model")]


def _bank_not_utf8(tmp: Path) -> list[str]:
    (tmp / "train.jsonl").write_bytes(b'{"question": "Caf\xe9?", "options": {"A": "a", "B": "b"}, "answer": "a"}\n')
    return ["curate", "load", "--set", f"bank.path={tmp / 'train.jsonl'}", "--set", "bank.format=medqa",
            "--set", f"output_dir={tmp / 'out'}"]


def _rollout_bad_record(tmp: Path) -> list[str]:
    (tmp / "questions.jsonl").write_text('{"id": "q1", "source": "x", "question": "Why?", "options": {"A": "a", '
                                         '"B": "b"}, "answer": "A"}\n{"id": "q2", "question": "no source"}\n',
                                         encoding="utf-8")
    return ["rollout", "--questions", str(tmp / "questions.jsonl"), "--output", str(tmp / "rollouts.jsonl"),
            "--m1-model", str(tmp / "m1")]


def _pipeline_typo(tmp: Path) -> list[str]:
    (tmp / "pipeline.yaml").write_text("rollout: {num_candidate: 8}\n", encoding="utf-8")
    return ["run", str(tmp / "pipeline.yaml")]


CASES = [
    Case("register: malformed dataset_info.json", _register_malformed, "{tmp}/proj/dataset_info.json: not valid JSON"),
    Case("chat-template: malformed tokenizer_config.json", _chat_template_malformed,
         "{tmp}/tok/tokenizer_config.json: not valid JSON"),
    Case("chat-template: missing folder", _chat_template_missing, "{tmp}/no-such-model: no such model folder"),
    Case("curate: a bank with non-UTF-8 bytes", _bank_not_utf8, "{tmp}/train.jsonl:line 1: not UTF-8"),
    Case("rollout: a malformed question record", _rollout_bad_record, "{tmp}/questions.jsonl:line 2"),
    Case("run: a typo in a stage section", _pipeline_typo, "unknown key(s) rollout.num_candidate"),
]


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file's bytes; an empty ``*.lock`` sidecar (core/files.py: kept on purpose, since removing
    a lock file another process may be waiting on is a race) does not count as a change."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not (p.suffix == ".lock" and p.stat().st_size == 0)}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(case: Case, tmp_path: Path) -> None:
    arguments = case.prepare(tmp_path)
    before = _snapshot(tmp_path)
    result = subprocess.run([sys.executable, "-m", "mede2_plugin.cli", *arguments], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    assert case.expect.format(tmp=tmp_path) in lines[0]
    assert _snapshot(tmp_path) == before, "a file was changed, added or half written"
