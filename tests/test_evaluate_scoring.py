"""Benchmark configs on files in the public layouts, and scoring of generations."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_data_helpers import (
    mmmu_pro_rows,
    write_medbullets_csv,
    write_medqa,
    write_medxpertqa,
    write_mmmu,
    write_mmmu_pro,
)

from mede2_plugin.core.chat_format import system_prompt
from mede2_plugin.core.questions import Question
from mede2_plugin.evaluate import (
    BENCHMARKS,
    EvalSettings,
    accuracy_table,
    build_requests,
    load_benchmark,
    load_benchmark_configs,
    score_question,
)

OPTIONS = {"A": "Acetazolamide", "B": "Amitriptyline", "C": "Clopidogrel"}


def question(qid: str, answer: str = "A", **metadata: str) -> Question:
    return Question(id=qid, source="t", question="Which drug?", options=OPTIONS, answer=answer,
                    question_type=metadata.pop("question_type", None), metadata=metadata)


def row(*texts: str, error: str | None = None) -> dict:
    return {"id": "x", "samples": [{"text": t, "finish_reason": "stop"} for t in texts], "error": error}


def test_score_question_counts_unparseable_apart() -> None:
    score = score_question(question("q1"), row("\\boxed{A}", "no idea", "<think>cut", "\\boxed{F}", "\\boxed{B}"))
    assert score.letters == ["A", None, None, None, "B"]
    assert score.correct == 1 and score.unparseable == 3 and score.accuracy == pytest.approx(0.2)
    assert score.truncated == [False, False, True, False, False]


def test_missing_and_failed_rows_are_not_answers() -> None:
    assert score_question(question("q"), None).error == "missing"
    failed = score_question(question("q"), {"id": "q", "samples": [], "error": "HTTP 500"})
    assert failed.error == "HTTP 500" and not failed.answered
    with pytest.raises(ValueError, match="no answer"):
        score_question(Question(id="q", source="t", question="?", options=OPTIONS), row("A"))


def test_accuracy_table_overall_and_splits() -> None:
    fields = ["question_type", "metadata.medical_task"]
    scores = [
        score_question(question("1", question_type="Reasoning", medical_task="Diagnosis"), row("\\boxed{A}"), fields),
        score_question(question("2", question_type="Reasoning", medical_task="Treatment"), row("\\boxed{C}"), fields),
        score_question(question("3", question_type="Understanding"), row("garbage"), fields),
        score_question(question("4", question_type="Understanding", medical_task="Diagnosis"), None, fields),
    ]
    table = accuracy_table(scores, fields)
    assert table["questions"] == 4 and table["answered"] == 3 and table["missing"] == 1
    assert table["complete"] is False
    assert table["accuracy"] == pytest.approx(1 / 3) and table["unparseable"] == 1
    reasoning = table["splits"]["question_type"]["Reasoning"]
    assert reasoning["accuracy"] == 0.5 and reasoning["questions"] == 2
    understanding = table["splits"]["question_type"]["Understanding"]
    assert understanding["accuracy"] == 0.0 and understanding["unparseable"] == 1 and understanding["missing"] == 1
    assert set(table["splits"]["metadata.medical_task"]) == {"Diagnosis", "Treatment", "unknown"}


def test_requests_use_the_training_template(tmp_path: Path) -> None:
    _, images = write_medxpertqa(tmp_path / "MedXpertQA", "MM")
    questions = load_benchmark(BENCHMARKS["medxpertqa_mm"], tmp_path / "MedXpertQA", tmp_path / "media").questions
    [request, *_] = build_requests(questions, EvalSettings(samples=4))
    assert request.n == 4 and request.temperature == 0.5 and request.id == "medxpertqa-MM-0"
    assert request.messages[0] == {"role": "system", "content": system_prompt()}
    parts = request.messages[1]["content"]
    assert parts[0]["image_url"]["url"] == (images / "MM-0-a.jpeg").resolve().as_uri()
    assert parts[-1]["text"].rstrip().endswith("Put your final answer within \\boxed{}.")
    assert "E. Medial collateral ligament reconstruction" in parts[-1]["text"]
    assert EvalSettings().temperature == 0.0


@pytest.mark.parametrize("name,writer,count,options", [
    ("medqa_5op", lambda root: write_medqa(root / "data_clean/questions/US/test.jsonl"), 3, 5),
    ("medqa", lambda root: write_medqa(root / "data_clean/questions/US/4_options/phrases_no_exclude_test.jsonl",
                                       four_options=True), 3, 4),
    ("medbullets_op4", lambda root: write_medbullets_csv(root / "medbullets_op4.csv", 4), 2, 4),
    ("medbullets_op5", lambda root: write_medbullets_csv(root / "medbullets_op5.csv", 5), 2, 5),
    ("medxpertqa_mm", lambda root: write_medxpertqa(root, "MM"), 3, 5),
    ("medxpertqa_text", lambda root: write_medxpertqa(root, "Text"), 2, 10),
    ("mmmu_health", lambda root: write_mmmu(root), 3, None),
    ("mmmu_pro_health", lambda root: write_mmmu_pro(root), 2, 10),
])
def test_every_builtin_benchmark_loads_its_public_layout(tmp_path: Path, name: str, writer, count: int,
                                                          options: int | None) -> None:
    root = tmp_path / BENCHMARKS[name].default_dir
    writer(root)
    result = load_benchmark(BENCHMARKS[name], root, tmp_path / "media")
    assert len(result.questions) == count, result.rejected
    if options:
        assert {len(q.options) for q in result.questions} == {options}
    if BENCHMARKS[name].modality == "image":
        assert all(q.images and all(Path(p).is_file() for p in q.images) for q in result.questions
                   if q.metadata.get("image_indices", [1]))


def test_num_options_rejects_other_counts(tmp_path: Path) -> None:
    root = tmp_path / "MMMU_Pro"
    write_mmmu_pro(root, [dict(mmmu_pro_rows()[0], options="['a', 'b', 'c', 'd']", answer="B"), mmmu_pro_rows()[1]])
    result = load_benchmark(BENCHMARKS["mmmu_pro_health"], root, tmp_path / "media")
    assert [q.id for q in result.questions] == ["mmmu_pro-test_Pharmacy_246"]
    assert any("4 options" in r.reason for r in result.rejected)


def test_benchmark_yaml(tmp_path: Path) -> None:
    path = tmp_path / "benchmarks.yaml"
    path.write_text("- name: my_bank\n  format: generic\n  files: bank.jsonl\n  splits: [metadata.topic]\n")
    [config] = load_benchmark_configs(path).values()
    assert config.files == ["bank.jsonl"] and config.title == "my_bank"
    path.write_text("- name: x\n  format: generic\n  files: []\n  colour: red\n")
    with pytest.raises(ValueError, match="entry 0: .*colour"):
        load_benchmark_configs(path)
