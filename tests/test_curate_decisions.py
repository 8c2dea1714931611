"""Decision logic of the curation steps, without any model call: difficulty thresholds and
re-thresholding, classifier votes, caption-rewrite checks, settings loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mede2_plugin.client.config import BackendConfig
from mede2_plugin.core.jsonl import read_jsonl, write_jsonl
from mede2_plugin.core.questions import Question
from mede2_plugin.core.settings import ConfigError
from mede2_plugin.curate.captions import check_rewrite, parse_rewrite, strip_record
from mede2_plugin.curate.classify import classification_record, parse_category, vote
from mede2_plugin.curate.config import (
    ClassifyConfig,
    DifficultyConfig,
    SolverConfig,
    StripConfig,
    load_curate_config,
)
from mede2_plugin.curate.difficulty import decide, decide_step, solver_attempts

Q = Question(id="q1", source="t", question="Which drug?", options={"A": "x", "B": "y", "C": "z"}, answer="B")


def entry(*letters: str, answer: str = "B", status: str = "answered") -> dict:
    return {"solver": "s", "model": "m", "status": status,
            "attempts": [{"text": f"\\boxed{{{l}}}", "extracted": l, "correct": l == answer} for l in letters]}


def record(baseline=None, strong=None, answer="B") -> dict:
    return {"id": "q1", "answer": answer, "baseline": baseline, "strong": strong or []}


@pytest.mark.parametrize("rec, cfg, expected", [
    (record(entry("B"), [entry("A", "A", "B", "C")]), DifficultyConfig(), (False, "baseline_solved")),
    (record(entry("A"), [entry("A", "A", "B", "C")]), DifficultyConfig(), (True, "kept")),
    (record(entry("A"), [entry("A", "A", "C", "C")]), DifficultyConfig(), (False, "strong_never_solved")),
    (record(entry("A"), [entry("A", "B", "C", "C")]), DifficultyConfig(min_strong_correct=2), (False, "strong_below_min")),
    (record(entry("A"), [entry("B", "B", "B", "B")]), DifficultyConfig(max_strong_correct=3), (False, "strong_above_max")),
    (record(entry(status="failed")), DifficultyConfig(), (False, "pending_baseline")),
    (record(None), DifficultyConfig(), (False, "pending_baseline")),
    (record(entry("A"), [entry(status="failed")]), DifficultyConfig(), (False, "pending_strong")),
    (record(entry("A"), []), DifficultyConfig(), (False, "pending_strong")),
    (record(entry("B"), [entry(status="not_asked")]), DifficultyConfig(drop_baseline_solved=False), (False, "pending_strong")),
    (record(entry("B"), [entry("B")]), DifficultyConfig(drop_baseline_solved=False), (True, "kept")),
    (record(None, [entry("A", "B")]), DifficultyConfig(baseline=None), (True, "kept")),
    (record(entry("B", "A"), [entry("B")]), DifficultyConfig(baseline_solved_min=2), (True, "kept")),
    (record(entry("A"), [entry("A"), entry("B")]), DifficultyConfig(), (True, "kept")),  # two experts: one right
    (record(entry("A"), [entry("A")], answer=None), DifficultyConfig(), (False, "no_answer_key")),
])
def test_difficulty_decision(rec, cfg, expected):
    assert decide(rec, cfg) == expected


def test_solver_attempts_extract_and_judge_each_attempt():
    row = {"id": "q1", "error": None, "samples": [{"text": "so \\boxed{B}", "finish_reason": "stop"},
                                                  {"text": "The answer is (C)", "finish_reason": "stop"},
                                                  {"text": "unsure", "finish_reason": "length"}]}
    got = solver_attempts(Q, SolverConfig(), row)
    assert [a["extracted"] for a in got["attempts"]] == ["B", "C", None]
    assert [a["correct"] for a in got["attempts"]] == [True, False, False]
    assert got["correct"] == 1 and got["status"] == "answered"
    failed = solver_attempts(Q, SolverConfig(), {"id": "q1", "samples": [], "error": "RateLimitError: 429"})
    assert failed["status"] == "failed" and "429" in failed["error"]
    assert solver_attempts(Q, SolverConfig(), None)["status"] == "missing"


def test_rethreshold_from_stored_attempts_changes_decisions_without_calls(tmp_path: Path):
    questions = [Question(id=f"q{i}", source="t", question=f"Q{i}?", options={"A": "a", "B": "b"}, answer="B")
                 for i in range(3)]
    attempts = [record(entry("A"), [entry("B", "A", "A", "A")]), record(entry("A"), [entry("B", "B", "A", "A")]),
                record(entry("B"), [entry("B", "B", "B", "B")])]
    for i, rec in enumerate(attempts):
        rec["id"] = f"q{i}"
    write_jsonl(tmp_path / "attempts.jsonl", attempts)
    cfg = DifficultyConfig(baseline=SolverConfig(backend=BackendConfig(backend="openai", model="never-called")))
    report = decide_step(questions, cfg, tmp_path)
    assert report.kept == 2 and report.dropped == {"baseline_solved": 1} and report.model_calls == 0
    cfg.min_strong_correct = 2
    report = decide_step(questions, cfg, tmp_path)
    assert report.kept == 1 and report.dropped == {"baseline_solved": 1, "strong_below_min": 1}
    kept = [json.loads(line)["id"] for line in (tmp_path / "kept.jsonl").read_text().splitlines()]
    assert kept == ["q1"]
    records = {r["id"]: r for r in read_jsonl(tmp_path / "records.jsonl")}
    assert records["q0"]["strong_correct"] == 1 and records["q0"]["strong_attempts"] == 4


def test_classifier_parsing_and_votes():
    assert parse_category({"parsed": {"category": "reasoning", "rationale": "r"}}) == ("reasoning", "r")
    assert parse_category({"text": '{"category": "Pattern Recognition", "rationale": ""}'})[0] == "pattern_recognition"
    assert parse_category({"text": "```json\n{\"category\": \"knowledge-recall\"}\n```"})[0] == "knowledge_recall"
    assert parse_category({"text": "This is clearly knowledge recall."})[0] == "knowledge_recall"
    assert parse_category({"text": "no idea"})[0] is None
    assert parse_category({"text": '{"category": "vibes"}'})[0] is None
    order = ["reasoning", "knowledge_recall", "pattern_recognition"]
    assert vote(["pattern_recognition", "pattern_recognition", "reasoning"], order) == "pattern_recognition"
    assert vote(["pattern_recognition", "reasoning", None], order) == "reasoning"  # tie -> tie_order
    assert vote([None, None], order) is None


def test_classification_record_reasons():
    image_q = Question(id="i", source="t", question="What is shown?", options={"A": "a", "B": "b"}, answer="A",
                       images=["x.png"])
    cfg = ClassifyConfig()
    row = lambda text: {"id": "i", "error": None, "samples": [{"text": text}]}
    assert classification_record(image_q, row('{"category": "reasoning"}'), cfg, True)["reason"] == "kept"
    assert classification_record(image_q, row('{"category": "pattern_recognition"}'), cfg, True)["reason"] == "pattern_recognition"
    assert classification_record(image_q, row("???"), cfg, True)["reason"] == "classifier_unparsable"
    assert classification_record(image_q, {"id": "i", "samples": [], "error": "boom"}, cfg, True)["reason"] == "pending_classifier"
    assert classification_record(image_q, None, cfg, False) | {} == {
        "id": "i", "has_images": True, "classified": False, "kept": True, "reason": "kept", "category": None}
    keep_recall = ClassifyConfig(drop_categories=["pattern_recognition"])
    assert classification_record(image_q, row('{"category": "knowledge_recall"}'), keep_recall, True)["kept"]
    with pytest.raises(ValueError, match="unknown category"):
        ClassifyConfig(drop_categories=["trivia"])


STRIP_Q = Question(id="s", source="t", question="Her temperature is 38.2 C. The CT shows a 3 cm mass in the liver. "
                                                "Which is the most appropriate next step?",
                   options={"A": "Percutaneous drainage", "B": "Observation"}, answer="A", images=["a.png"],
                   patient_info="A 45-year-old woman has fever.")


def rewrite(question: str, patient_info: str = "A 45-year-old woman has fever.", removed=None) -> dict:
    return {"patient_info": patient_info, "question": question,
            "removed": ["The CT shows a 3 cm mass in the liver."] if removed is None else removed}


@pytest.mark.parametrize("new, failures", [
    (rewrite("Her temperature is 38.2 C. Which is the most appropriate next step?"), []),
    (rewrite("Her temperature is 38.2 C. Which is the most appropriate next step?", removed=[]), ["patient_facts_changed"]),
    (rewrite("Her temperature is 38.2 C. Which is the most appropriate next step?",
             patient_info="A 54-year-old woman has fever."), ["patient_facts_changed"]),
    (rewrite("Her temperature is 38.2 C and her pulse is 120/min. Which is the most appropriate next step?"),
     ["patient_facts_changed"]),
    (rewrite("Her temperature is 38.2 C. Is percutaneous drainage the most appropriate next step?"),
     ["answer_leaked"]),
    (rewrite("Her temperature is 38.2 C. What is the diagnosis?"), ["question_changed"]),
    (rewrite("Next step?", patient_info="", removed=["A 45-year-old woman has fever.", "Her temperature is 38.2 C.",
                                                     "The CT shows a 3 cm mass in the liver."]),
     ["question_changed", "over_deleted"]),
])
def test_caption_rewrite_checks(new, failures):
    assert check_rewrite(STRIP_Q, new, StripConfig()) == failures


def test_caption_record_keeps_original_beside_rewrite_and_never_takes_options_from_reply():
    reply = {"id": "s", "error": None, "samples": [{"text": json.dumps({
        **rewrite("Her temperature is 38.2 C. Which is the most appropriate next step?"),
        "options": {"A": "changed", "B": "changed"}, "answer": "B"})}]}
    rec, question = strip_record(STRIP_Q, reply, StripConfig(), asked=True)
    assert rec["kept"] and rec["changed"] and rec["original"]["question"] == STRIP_Q.question
    assert question.question.startswith("Her temperature is 38.2 C. Which")
    assert question.options == STRIP_Q.options and question.answer == "A" and question.images == ["a.png"]
    assert question.metadata["caption_stripping"]["original_question"] == STRIP_Q.question
    bad = {"id": "s", "error": None,
           "samples": [{"text": json.dumps(rewrite("Her temperature is 38.2 C. What is the diagnosis?"))}]}
    rec, question = strip_record(STRIP_Q, bad, StripConfig(), asked=True)
    assert not rec["kept"] and rec["reason"] == "question_changed"
    rec, question = strip_record(STRIP_Q, bad, StripConfig(on_check_failure="keep_original"), asked=True)
    assert rec["kept"] and rec["kept_original"] and question.question == STRIP_Q.question
    assert question.metadata["caption_stripping"]["failed_checks"] == ["question_changed"]
    assert parse_rewrite({"text": "I cannot do that"}) is None
    rec, _ = strip_record(STRIP_Q, {"id": "s", "error": None, "samples": [{"text": "nope"}]}, StripConfig(), True)
    assert rec["reason"] == "rewrite_unparsable"


def test_config_yaml_overrides_and_errors(tmp_path: Path):
    path = tmp_path / "pipeline.yaml"
    path.write_text("curate:\n  difficulty:\n    strong:\n      - {backend: {backend: openai, model: a}, name: e1}\n"
                    "      - {backend: {backend: openai, model: b}, name: e2, samples: 2}\n"
                    "  leakage: {threshold: 0.8, benchmarks: [{path: x.jsonl, format: medqa}]}\n")
    config = load_curate_config(path, ["difficulty.strong.1.samples=6", "difficulty.baseline=null",
                                       "classify.classifier.backend=gemini"])
    assert [s.label for s in config.difficulty.strong] == ["e1", "e2"]
    assert config.difficulty.strong[1].samples == 6 and config.difficulty.baseline is None
    assert config.leakage.threshold == 0.8 and config.leakage.benchmarks[0].format == "medqa"
    # the backend changed, so does its default key variable
    assert config.classify.classifier.api_key_env == "GEMINI_API_KEY"
    assert config.difficulty.strong[0].backend.model == "a"  # default gemini solver replaced by the list
    path.write_text("curate:\n  difficulty: {strong_on_al: true}\n")
    with pytest.raises(ConfigError, match=r"pipeline.yaml: unknown key\(s\) difficulty.strong_on_al"):
        load_curate_config(path)
    with pytest.raises(ConfigError, match="threshold must be in"):
        load_curate_config(None, ["leakage.threshold=1.5"])
    with pytest.raises(ConfigError, match="solver labels must differ"):
        load_curate_config({"difficulty": {"strong": [{}, {}]}})


def test_printed_config_loads_back_unchanged(tmp_path: Path):
    from mede2_plugin.core.settings import dump_config, to_plain
    from mede2_plugin.distill.config import load_distill_config

    curate = load_curate_config(None, ["difficulty.strong.0.samples=8", "leakage.ngram=7"])
    (tmp_path / "c.yaml").write_text(dump_config(curate))
    assert to_plain(load_curate_config(tmp_path / "c.yaml")) == to_plain(curate)
    distill = load_distill_config(None, ["teachers.2.samples=3"])
    (tmp_path / "d.yaml").write_text(dump_config(distill))
    assert to_plain(load_distill_config(tmp_path / "d.yaml")) == to_plain(distill)
