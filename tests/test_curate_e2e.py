"""``mede2 curate all`` end to end through the real openai SDK against the fake OpenAI-compatible
server: scripted baseline, strong, classifier and rewriter replies reach every drop reason; a
failed call is retried by the next run; a third run makes no call; re-thresholding makes none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from curate_helpers import (
    FIXTURES,
    CurateScript,
    curate_config,
    fixture_questions,
    write_images,
)

from mede2_plugin.cli import main
from mede2_plugin.core.jsonl import read_jsonl
from mede2_plugin.testing import FakeOpenAIServer


def ids(path: Path) -> list[str]:
    return [r["id"] for r in read_jsonl(path)]


def step_report(out: Path, step: str) -> dict:
    return json.loads((out / step / "report.json").read_text())


@pytest.fixture()
def curate_run(tmp_path: Path):
    questions = fixture_questions()
    script = CurateScript(questions)
    images = write_images(tmp_path / "media", [f"i{n}.png" for n in range(1, 7)])
    with FakeOpenAIServer(reply=script.reply, faults=script.faults) as server:
        config_path = tmp_path / "curate.yaml"
        config_path.write_text(yaml.safe_dump(curate_config(tmp_path, server.base_url, images)))
        yield server, config_path, tmp_path / "curate_out"


def test_curate_all_reaches_every_reason_resumes_and_rethresholds(curate_run, capsys):
    server, config_path, out = curate_run

    # first run: the baseline call about t6 fails (500, no retries) -> t6 pending, exit code 1
    assert main(["curate", "all", "-c", str(config_path)]) == 1
    first_calls = server.call_count
    assert first_calls == 11 + 9 + 6 + 3  # baseline, strong (not t1: solved; not t6: pending), classify, strip
    table = capsys.readouterr().out
    assert "difficulty" in table and "baseline_solved=1" in table

    assert step_report(out, "load")["kept"] == 12
    leakage = step_report(out, "leakage")
    assert (leakage["input"], leakage["kept"], leakage["dropped"]) == (12, 11, {"leaked": 1})
    difficulty = step_report(out, "difficulty")
    assert difficulty["dropped"] == {"baseline_solved": 1, "pending_baseline": 1, "strong_never_solved": 1}
    assert difficulty["pending"] == 1 and difficulty["kept"] == 8

    # second run retries only the failed call, then asks the strong solver about t6
    assert main(["curate", "all", "-c", str(config_path)]) == 0
    assert server.call_count == first_calls + 2
    difficulty = step_report(out, "difficulty")
    assert difficulty["dropped"] == {"baseline_solved": 1, "strong_never_solved": 1} and difficulty["kept"] == 9
    classify = step_report(out, "classify")
    assert (classify["input"], classify["kept"]) == (9, 6)
    assert classify["dropped"] == {"classifier_unparsable": 1, "knowledge_recall": 1, "pattern_recognition": 1}
    strip = step_report(out, "strip")
    assert (strip["input"], strip["kept"]) == (6, 4)
    assert strip["dropped"] == {"answer_leaked": 1, "patient_facts_changed": 1}
    assert ids(out / "curated.jsonl") == ["t2", "t4", "t6", "i2"]
    assert ids(out / "curated_text.jsonl") == ["t2", "t4", "t6"] and ids(out / "curated_image.jsonl") == ["i2"]

    # every attempt is stored with its extracted answer
    attempts = {r["id"]: r for r in read_jsonl(out / "difficulty" / "attempts.jsonl")}
    assert [a["extracted"] for a in attempts["t2"]["strong"][0]["attempts"]] == ["B", "B", "A", "B"]
    assert attempts["t4"]["baseline"]["attempts"][0]["extracted"] is None
    assert attempts["t1"]["baseline"]["attempts"][0]["correct"] and attempts["t1"]["strong"][0]["status"] == "not_asked"

    # the caption-stripped question: rewritten text, original options/answer/images, original kept beside it
    (image_question,) = list(read_jsonl(out / "curated_image.jsonl"))
    original = next(q for q in fixture_questions() if q.id == "i2")
    assert "CT shows" not in image_question["question"] and image_question["options"] == original.options
    assert image_question["answer"] == "A" and image_question["images"] == ["i2.png"]
    assert image_question["metadata"]["caption_stripping"]["original_question"] == original.question
    assert "3 cm rim-enhancing" in (out / "strip" / "review.md").read_text()

    # requests: images as data URLs for the solvers, JSON schema for the classifier
    bodies = [c.body for c in server.calls]
    solver_i2 = next(b for b in bodies if b["model"] == "strong-model" and "hepatic" in json.dumps(b))
    assert solver_i2["n"] == 4 and solver_i2["messages"][-1]["content"][0]["image_url"]["url"].startswith("data:image/png")
    classifier = next(b for b in bodies if b["model"] == "classifier-model")
    assert classifier["response_format"]["type"] == "json_schema"

    # third run: nothing left to ask
    curated = (out / "curated.jsonl").read_text()
    assert main(["curate", "all", "-c", str(config_path)]) == 0
    assert server.call_count == first_calls + 2
    assert (out / "curated.jsonl").read_text() == curated
    summary = json.loads((out / "report.json").read_text())
    assert summary["curated"] == {"curated": 4, "curated_text": 3, "curated_image": 1}
    assert all(step["model_calls"] == 0 for step in summary["steps"].values())

    # re-threshold from stored attempts: no call, new decisions
    assert main(["curate", "rethreshold", "-c", str(config_path), "--set", "difficulty.min_strong_correct=2"]) == 0
    assert server.call_count == first_calls + 2
    difficulty = step_report(out, "difficulty")
    assert ids(out / "difficulty" / "kept.jsonl") == ["t4"]
    assert difficulty["dropped"]["strong_below_min"] == 8  # t2, t6, i1-i6: right once only


def test_curate_load_public_layout_rejects_bad_rows_with_line(tmp_path: Path, capsys):
    out = tmp_path / "out"
    assert main(["curate", "load", "--bank", str(FIXTURES / "medqa_train.jsonl"), "--format", "medqa",
                 "-o", str(out)]) == 0
    report = step_report(out, "load")
    assert (report["input"], report["kept"], report["dropped"]) == (2, 1, {"rejected_row": 1})
    (rejected,) = list(read_jsonl(out / "load" / "rejected.jsonl"))
    assert rejected["record"] == "line 2" and "differs from option A" in rejected["reason"]
    assert ids(out / "load" / "kept.jsonl") == ["medqa-medqa_train-0"]


def test_curate_step_without_its_input_says_what_to_run(tmp_path: Path, capsys):
    assert main(["curate", "classify", "-o", str(tmp_path / "nothing")]) == 2
    assert "run `mede2 curate difficulty` first" in capsys.readouterr().err
    assert main(["curate", "config", "--set", "difficulty.nope=1"]) == 2
    assert "unknown key(s) difficulty.nope" in capsys.readouterr().err


def test_two_experts_without_baseline_as_for_the_paper_image_questions(tmp_path: Path):
    """Paper 3.1, image questions: no baseline; kept when either expert is right in any attempt."""
    from curate_helpers import backend

    from mede2_plugin.curate import load_curate_config, run_step

    questions = fixture_questions()
    script = CurateScript(questions)
    images = write_images(tmp_path / "media", [f"i{n}.png" for n in range(1, 7)])
    with FakeOpenAIServer(reply=script.reply) as server:
        config = load_curate_config({
            "output_dir": str(tmp_path / "out"), "media_dir": str(images),
            "difficulty": {"baseline": None, "strong": [
                {"name": "expert1", "backend": backend("strong-model", server.base_url), "samples": 2},
                {"name": "expert2", "backend": backend("expert2-model", server.base_url), "samples": 2}]}})
        bank = tmp_path / "bank.jsonl"
        bank.write_text("".join(json.dumps(q.to_dict()) + "\n" for q in questions if q.id in {"t3", "i1", "i2"}))
        report = run_step(config, "difficulty", input_path=bank)
        assert server.call_count == 6 and {c.body["model"] for c in server.calls} == {"strong-model", "expert2-model"}
    assert (report.kept, report.dropped) == (2, {"strong_never_solved": 1})
    attempts = {r["id"]: r for r in read_jsonl(tmp_path / "out" / "difficulty" / "attempts.jsonl")}
    assert attempts["i1"]["baseline"] is None
    assert [e["solver"] for e in attempts["i1"]["strong"]] == ["expert1", "expert2"]
    assert [e["correct"] for e in attempts["i1"]["strong"]] == [1, 0]
    assert (tmp_path / "out" / "difficulty" / "expert2.results.jsonl").exists()
