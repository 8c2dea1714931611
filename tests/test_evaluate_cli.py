"""`mede2 eval` / `mede2 report` end to end against a local fake OpenAI-compatible server.

The server answers each question with a scripted output (right, wrong, or unparseable) so every
number in the metrics is known; it also fails chosen calls, which is how a crashed evaluation is
simulated and then resumed.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from test_data_helpers import write_medbullets_csv, write_medxpertqa

from mede2_plugin.cli import main
from mede2_plugin.testing import FakeOpenAIServer, prompt_text

OUTPUT = {  # question stem fragment -> scripted output per sample index
    "rotatory stability": lambda i: "<think>\nLCL first.\n</think><answer>\n\\boxed{A}\n</answer>",     # right
    "needle localization": lambda i: "<think>\nHmm, the approach depends on",                          # cut off
    "blood smear": lambda i: f"<think>\nsmear\n</think><answer>\n\\boxed{{{'E' if i % 2 else 'B'}}}\n</answer>",
    "prophylaxis": lambda i: "<think>\nglaucoma\n</think><answer>\n\\boxed{A}\n</answer>",
    "stiff neck": lambda i: "The answer is (B).",
}


def reply(body: dict, index: int) -> str:
    text = prompt_text(body)
    assert "<think>" in text and "Put your final answer within \\boxed{}." in text  # our template
    for fragment, make in OUTPUT.items():
        if fragment in text:
            return make(index)
    raise AssertionError(f"unexpected prompt: {text[:200]}")


@pytest.fixture()
def benchmarks(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "data"
    write_medxpertqa(root / "MedXpertQA", "MM")
    write_medbullets_csv(root / "Medbullets" / "medbullets_op4.csv", 4)
    return {"root": root}


def eval_args(server: FakeOpenAIServer, out: Path, label: str, *extra: str) -> list[str]:
    return ["eval", "--benchmark", "medxpertqa_mm", "--out", str(out), "--label", label,
            "--backend", "openai", "--model", "fake", "--base-url", server.base_url,
            "--api-key-env", "MEDE2_TEST_KEY", "--max-retries", "0", "--no-progress", "--cache-dir", "off",
            "--max-tokens", "256", *extra]


def test_eval_resume_scaling_and_report(benchmarks: dict[str, Path], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("MEDE2_TEST_KEY", "not-a-real-key")
    out = tmp_path / "eval"
    root = benchmarks["root"]
    with FakeOpenAIServer(reply=reply, faults=[None, "500"]) as server:
        # first run: the second call fails -> incomplete (exit 1), like a crash half-way
        assert main(eval_args(server, out, "base", "--data-root", str(root))) == 1
        folder = out / "base" / "medxpertqa_mm"
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["complete"] is False and metrics["missing"] == 1
        calls = server.call_count
        # rerun: only the failed question is asked again
        assert main(eval_args(server, out, "base", "--data-root", str(root))) == 0
        assert server.call_count == calls + 1
        # a rerun of a complete evaluation makes no call
        assert main(eval_args(server, out, "base", "--data-root", str(root))) == 0
        assert server.call_count == calls + 1
        # images travel as image parts of the request
        first_mm0 = next(c for c in server.calls if "rotatory" in prompt_text(c.body))
        parts = first_mm0.body["messages"][1]["content"]
        assert [p["type"] for p in parts] == ["image_url", "image_url", "text"]

        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["questions"] == 3 and metrics["complete"] is True
        assert metrics["accuracy"] == pytest.approx(1 / 3)       # MM-0 right, MM-1 cut off, MM-2 says B (wrong)
        assert metrics["unparseable"] == 1 and metrics["truncated"] == 1
        by_type = metrics["splits"]["question_type"]
        assert by_type["Reasoning"]["accuracy"] == pytest.approx(0.5)
        assert by_type["Understanding"]["accuracy"] == 0.0 and by_type["Understanding"]["unparseable"] == 1
        assert set(metrics["splits"]["metadata.medical_task"]) == {"Treatment", "Basic Science", "Diagnosis"}
        scored = [json.loads(line) for line in (folder / "scored.jsonl").read_text().splitlines()]
        assert [s["letters"] for s in scored] == [["A"], [None], ["B"]]

        # another sampling setting into the same folder is refused
        assert main(eval_args(server, out, "base", "--data-root", str(root), "--samples", "4")) == 2
        assert "other generation" in capsys.readouterr().err

        # k = 4 samples at the default T = 0.5: scaling curves
        assert main(eval_args(server, out, "stage1", "--data-root", str(root), "--samples", "4")) == 0
        scaled = out / "stage1" / "medxpertqa_mm"
        sent = [c.body for c in server.calls if c.body.get("n") == 4]
        assert sent and all(body["temperature"] == 0.5 for body in sent)
        metrics = json.loads((scaled / "metrics.json").read_text())
        assert metrics["samples_per_question"] == 4
        # MM-0 always right, MM-1 never parseable, MM-2 alternates B/E (E right): pass@1 = (1 + 0 + .5) / 3
        assert metrics["accuracy"] == pytest.approx(1.5 / 3)
        curve = {row["n"]: row for row in metrics["scaling"]}
        assert curve[4]["pass_at_n"] == pytest.approx(2 / 3)
        assert curve[4]["majority_at_n"] == pytest.approx((1 + 0 + 0.5) / 3)  # a B/E tie counts half
        assert (scaled / "scaling.png").read_bytes()[:4] == b"\x89PNG"
        assert (scaled / "scaling.csv").read_text().splitlines()[0].startswith("benchmark,model,n")

    # side-by-side report with the delta to the base
    capsys.readouterr()
    assert main(["report", str(out), "--base", "base", "--splits", "--out", str(tmp_path / "table1")]) == 0
    markdown = (tmp_path / "table1.md").read_text()
    assert "| base (base) | 33.33 |" in markdown
    assert "| stage1 | 50.00 (+16.67) |" in markdown
    assert "MedXpertQA-MM · Reasoning" in markdown
    assert "Unparseable answers" in markdown
    rows = list(csv.DictReader((tmp_path / "table1.csv").open()))
    overall = {r["model"]: r for r in rows if r["split"] == "overall"}
    assert overall["stage1"]["delta_to_base"] == "16.67" and overall["base"]["delta_to_base"] == ""
    assert (tmp_path / "table1_scaling.png").exists()


def test_eval_text_benchmark_and_rescore(benchmarks: dict[str, Path], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDE2_TEST_KEY", "x")
    out = tmp_path / "eval"
    csv_path = benchmarks["root"] / "Medbullets" / "medbullets_op4.csv"
    with FakeOpenAIServer(reply=reply) as server:
        args = eval_args(server, out, "m", "--samples", "1")
        args[2] = f"medbullets_op4={csv_path}"  # a single file instead of the release folder
        assert main(args) == 0
        calls = server.call_count
        assert main([*args, "--rescore"]) == 0 and server.call_count == calls
    metrics = json.loads((out / "m" / "medbullets_op4" / "metrics.json").read_text())
    assert metrics["accuracy"] == 0.5  # prophylaxis right (A); "The answer is (B)" wrong (C is right)
    assert metrics["splits"]["metadata.figure_not_shipped"]["True"]["accuracy"] == 1.0


def test_eval_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", "--benchmark", "nope=/x", "--backend", "openai", "--model", "m"]) == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err
    assert main(["eval", "--benchmark", f"medxpertqa_mm={tmp_path}", "--backend", "openai", "--model", "m",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "MM/test.jsonl" in err and "not found" in err
    assert main(["eval", "--benchmark", "medqa", "--backend", "openai", "--model", "m"]) == 2
    assert "--data-root" in capsys.readouterr().err
    assert main(["eval", "--list"]) == 0
    assert "mmmu_pro_health" in capsys.readouterr().out
