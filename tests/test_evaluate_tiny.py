"""`mede2 eval` on the tiny random-weight Qwen2-VL through the local backend (LLaMA-Factory engine).

Random weights answer nonsense, so the numbers are not checked against values; what is checked is
that image and text benchmarks in the public layouts run end to end, every sample is accounted
for (right, wrong, or unparseable, never silently dropped), and a rerun generates nothing new.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_data_helpers import write_medqa, write_medxpertqa

from mede2_plugin.cli import main

pytestmark = pytest.mark.slow


def test_eval_tiny_model_local_backend(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_medxpertqa(data / "MedXpertQA", "MM")
    write_medqa(data / "MedQA" / "data_clean" / "questions" / "US" / "test.jsonl")
    out = tmp_path / "eval"
    args = ["eval", "--benchmark", "medxpertqa_mm", "--benchmark", "medqa_5op", "--data-root", str(data),
            "--out", str(out), "--label", "tiny", "--backend", "local", "--model", str(tiny_model_dir),
            "--samples", "2", "--max-tokens", "8", "--limit", "2", "--seed", "0", "--no-progress"]
    assert main(args) == 0
    for benchmark in ("medxpertqa_mm", "medqa_5op"):
        folder = out / "tiny" / benchmark
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["questions"] == 2 and metrics["answered"] == 2 and metrics["complete"]
        assert metrics["samples"] == 4 and metrics["samples_per_question"] == 2
        scored = [json.loads(line) for line in (folder / "scored.jsonl").read_text().splitlines()]
        letters = [letter for row in scored for letter in row["letters"]]
        assert len(letters) == 4
        assert metrics["unparseable"] == sum(letter is None for letter in letters)
        assert metrics["correct_samples"] == sum(r["correct"] for r in scored)
        assert [row["n"] for row in metrics["scaling"]] == [1, 2]
        rows = [json.loads(line) for line in (folder / "generations.jsonl").read_text().splitlines()]
        assert all(len(row["samples"]) == 2 and row["error"] is None for row in rows)
        assert all(row["backend"] == "local" for row in rows)
    generations = (out / "tiny" / "medxpertqa_mm" / "generations.jsonl").read_text()
    assert main(args) == 0  # resumed: everything done, nothing generated again
    assert (out / "tiny" / "medxpertqa_mm" / "generations.jsonl").read_text() == generations
