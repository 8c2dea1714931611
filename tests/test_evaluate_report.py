"""Side-by-side reports (Table 1) and judge-human agreement (Figure 3)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from mede2_plugin.cli import main
from mede2_plugin.evaluate import (
    agreement,
    collect_metrics,
    markdown_table,
    read_scores,
    write_report,
)


def metrics(model: str, benchmark: str, accuracy: float, reasoning: float, **extra) -> dict:
    return {"benchmark": benchmark, "title": {"mm": "MedXpertQA-MM", "mmmu": "MMMU-Health"}[benchmark],
            "model": model, "accuracy": accuracy, "questions": 10, "answered": 10, "samples": 10,
            "unparseable": extra.pop("unparseable", 0), "complete": extra.pop("complete", True),
            "splits": {"question_type": {"Reasoning": {"accuracy": reasoning, "questions": 6, "samples": 6,
                                                       "answered": 6, "unparseable": 0}}}, **extra}


def write_run(root: Path, entry: dict) -> None:
    folder = root / entry["model"] / entry["benchmark"]
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(entry))


@pytest.fixture()
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "eval"
    write_run(root, metrics("Qwen-7B", "mm", 0.2070, 0.20))
    write_run(root, metrics("Qwen-7B", "mmmu", 0.5533, 0.5))
    write_run(root, metrics("stage1", "mm", 0.2515, 0.30, unparseable=3))
    write_run(root, metrics("stage2", "mm", 0.2655, 0.25, complete=False,
                            scaling=[{"n": 1, "pass_at_n": 0.26, "majority_at_n": 0.26, "questions": 10},
                                     {"n": 2, "pass_at_n": 0.35, "majority_at_n": 0.27, "questions": 10}]))
    return root


def test_markdown_and_csv_with_deltas(runs: Path, tmp_path: Path) -> None:
    found = collect_metrics([runs])
    ordered = {m: found[m] for m in ["Qwen-7B", "stage1", "stage2"]}
    table = markdown_table(ordered, "Qwen-7B")
    lines = table.splitlines()
    assert lines[0] == "| Model | MedXpertQA-MM | MMMU-Health |"
    assert lines[2] == "| Qwen-7B (base) | 20.70 | 55.33 |"
    assert lines[3] == "| stage1 | 25.15 (+4.45) | — |"
    assert lines[4] == "| stage2 | 26.55 (+5.85)* | — |"
    assert "stage1 / MedXpertQA-MM: 3 of 10" in table and "* incomplete" in table
    with_splits = markdown_table(ordered, "Qwen-7B", splits=True)
    assert "MedXpertQA-MM · Reasoning" in with_splits and "30.00 (+10.00)" in with_splits

    written = write_report(ordered, tmp_path / "out" / "table1", base="Qwen-7B", splits=True)
    rows = list(csv.DictReader(written["csv"].open()))
    stage1 = [r for r in rows if r["model"] == "stage1" and r["benchmark"] == "mm"]
    assert [(r["split"], r["value"], r["accuracy"], r["delta_to_base"]) for r in stage1] == [
        ("overall", "", "25.15", "4.45"), ("question_type", "Reasoning", "30.00", "10.00")]
    assert written["scaling_png"].read_bytes()[:4] == b"\x89PNG"
    scaling = list(csv.DictReader(written["scaling_csv"].open()))
    assert [(r["model"], r["n"], r["majority_at_n"]) for r in scaling] == [("stage2", "1", "26.00"), ("stage2", "2", "27.00")]
    with pytest.raises(ValueError, match="base model 'nobody'"):
        write_report(ordered, tmp_path / "x", base="nobody")


def test_report_cli_models_order(runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["report", str(runs / "stage1"), str(runs / "Qwen-7B"), "--models", "Qwen-7B", "stage1",
                 "--out", str(tmp_path / "r"), "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert out.index("Qwen-7B (base)") < out.index("| stage1 |")
    assert main(["report", str(runs), "--models", "ghost", "--out", str(tmp_path / "r")]) == 2
    assert main(["report", str(tmp_path / "nothing"), "--out", str(tmp_path / "r")]) == 2


def test_agreement_statistics(tmp_path: Path) -> None:
    human = {"a": 5, "b": 4, "c": 3, "d": 2, "e": 5, "only_h": 1}
    judge = {"a": 5, "b": 5, "c": 1, "d": 2, "e": 4, "only_j": 0}
    stats, items = agreement(human, judge)
    differences = [0, -1, 2, 0, 1]
    mean = sum(differences) / 5
    sigma = math.sqrt(sum((d - mean) ** 2 for d in differences) / 5)
    assert [i["difference"] for i in items] == differences
    assert stats.items == 5 and stats.mean_difference == pytest.approx(mean) and stats.sigma == pytest.approx(sigma)
    assert stats.share_within_sigma == pytest.approx(sum(abs(d - mean) <= sigma for d in differences) / 5)
    assert stats.share_within_sigma_of_zero == pytest.approx(sum(abs(d) <= sigma for d in differences) / 5)
    assert stats.exact_agreement == pytest.approx(0.4)
    assert stats.histogram == {"-1": 1, "0": 2, "1": 1, "2": 1}
    assert stats.only_human == ["only_h"] and stats.only_judge == ["only_j"]
    sample = agreement(human, judge, ddof=1)[0]
    assert sample.sigma == pytest.approx(sigma * math.sqrt(5 / 4))
    with pytest.raises(ValueError, match="only 0 item"):
        agreement({"a": 1}, {"b": 1})


def test_agreement_cli_with_mmrp_style_judge(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    human = tmp_path / "human.csv"
    human.write_text("id,score\r\nq1,5\r\nq2,3\r\nq3,4\r\n")
    judge = tmp_path / "judge.jsonl"
    verdicts = {"q1": ["Yes"] * 5, "q2": ["Yes", "No", "Yes", "No", "No"], "q3": ["Yes"] * 3 + ["No"] * 2}
    criteria = ["Answer_Correctness", "Logical_Consistency", "Image_Analysis_Involvement", "No_Hallucination",
                "Reflection_Presence"]
    judge.write_text("".join(json.dumps({"id": k, "judgement": dict(zip(criteria, v))}) + "\n" for k, v in verdicts.items()))
    out = tmp_path / "agreement"
    assert main(["agreement", "--human", str(human), "--human-field", "score", "--judge", str(judge),
                 "--judge-field", "judgement", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["items"] == 3 and summary["mean_difference"] == pytest.approx((0 + 1 + 1) / 3)
    assert (out / "agreement_histogram.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "differences.csv").read_text().splitlines()[1] == "q1,5.0,5.0,0.0"
    assert read_scores(judge, "judgement")["q2"] == 2.0
    bad = tmp_path / "bad.csv"
    bad.write_text("id,score\nq1,five\n")
    assert main(["agreement", "--human", str(bad), "--human-field", "score", "--judge-field", "score",
                 "--out", str(out)]) == 2
    assert "bad.csv:2" in capsys.readouterr().err
