"""Rollout and judge stages against local fake OpenAI-compatible servers (M1 and judge scripted)."""

from __future__ import annotations

import json
import re

import pytest
from mmrp_helpers import make_image, question_dict, write_questions

from mede2_plugin.client import BackendConfig
from mede2_plugin.core.jsonl import read_jsonl
from mede2_plugin.mmrp.judge import JudgeConfig, run_judge
from mede2_plugin.mmrp.pairs import PairingPolicy, build_pairs, load_judged
from mede2_plugin.mmrp.rollout import RolloutConfig, run_rollouts
from mede2_plugin.mmrp.stats import compute_stats
from mede2_plugin.testing import FakeOpenAIServer, Fault, prompt_text

CANDIDATES = {
    # q1: a positive, a hard negative (no reflection), a wrong answer, a cut-off output
    "q1": ["<think>The image shows a dense square: a mass. Wait, let me verify: yes.</think><answer>\\boxed{A}</answer>",
           "<think>It is a mass.</think><answer>\\boxed{A}</answer>",
           "<think>A fracture line.</think><answer>\\boxed{B}</answer>",
           "<think>It is unclear and"],
    # q2: malformed verdict once then valid, always malformed, wrong answer, a positive
    "q2": ["<think>BAD-ONCE. A mass; let me verify the borders.</think><answer>\\boxed{A}</answer>",
           "<think>ALWAYS-BAD mass.</think><answer>\\boxed{A}</answer>",
           "<think>Normal film.</think><answer>\\boxed{C}</answer>",
           "<think>Mass, and to verify I re-read the image.</think><answer>\\boxed{A}</answer>"],
}
YES5 = {"Answer_Correctness": "Yes", "Logical_Consistency": "Yes", "Image_Analysis_Involvement": "Yes",
        "No_Hallucination": "Yes", "Reflection_Presence": "Yes"}


def m1_reply(body, index):
    qid = re.search(r"case (q\d)", prompt_text(body)).group(1)
    return CANDIDATES[qid][index]


def judge_reply(body):
    answer = prompt_text(body).split("<Answer>\n", 1)[1].rsplit("\n</Answer>", 1)[0]
    if "ALWAYS-BAD" in answer:
        return "The reasoning looks fine to me."
    if "BAD-ONCE" in answer and body.get("seed") is None:
        return json.dumps({"Answer_Correctness": "Yes"})
    verdict = dict(YES5)
    if "\\boxed{A}" not in answer:
        verdict["Answer_Correctness"] = "No"
    if "verify" not in answer:
        verdict["Reflection_Presence"] = "No"
    return "```json\n" + json.dumps(verdict) + "\n```"


@pytest.fixture()
def bank(tmp_path):
    image = make_image(tmp_path / "media" / "scan.png")
    questions = [
        question_dict("q1", "scan.png", stripped="Which finding does the radiograph of case q1 show?"),
        question_dict("q2", "scan.png"),
        {**question_dict("q3", "scan.png"), "images": []},
        {**question_dict("q4", "scan.png"), "answer": None},
    ]
    assert image
    return write_questions(tmp_path / "media" / "questions.jsonl", questions)


def _config(server, **changes) -> BackendConfig:
    return BackendConfig(backend="openai", model="fake", base_url=server.base_url, max_retries=0,
                         timeout_s=10, progress=False, **changes)


@pytest.fixture(autouse=True)
def _api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-not-secret")


def _rollouts(tmp_path, bank):
    out = tmp_path / "work" / "rollouts.jsonl"
    with FakeOpenAIServer(reply=m1_reply) as m1:
        summary = run_rollouts(bank, out, _config(m1), RolloutConfig(num_candidates=4, max_tokens=256))
        bodies = [call.body for call in m1.calls]
    return out, summary, bodies


def test_rollouts_use_stripped_question_images_and_keep_rejections(tmp_path, bank):
    out, summary, bodies = _rollouts(tmp_path, bank)
    assert (summary.ok, summary.rejected, summary.failed, summary.candidates) == (2, 2, 0, 8)
    records = {r["id"]: r for r in read_jsonl(out)}
    assert records["q3"]["status"] == "rejected" and "no images" in records["q3"]["reason"]
    assert records["q4"]["status"] == "rejected" and "ground-truth" in records["q4"]["reason"]
    q1 = records["q1"]
    assert q1["text_from"] == "metadata.stripped_question"
    assert "Which finding does the radiograph of case q1 show?" in q1["prompt"]
    assert "dark square" not in q1["prompt"] and "dark square" in q1["original_question"]
    assert records["q2"]["text_from"] == "question"
    assert [c["text"] for c in q1["candidates"]] == CANDIDATES["q1"]
    body = next(b for b in bodies if "case q1" in prompt_text(b))
    assert body["n"] == 4 and body["max_tokens"] == 256
    assert body["messages"][0]["role"] == "system"
    assert body["messages"][1]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert "dark square" not in prompt_text(body)
    # a rerun asks nothing again
    with FakeOpenAIServer(reply=m1_reply) as m1:
        again = run_rollouts(bank, out, _config(m1), RolloutConfig(num_candidates=4, max_tokens=256))
        assert m1.call_count == 0
    assert again.already_done == 4


def test_judge_prescreen_retries_unjudged_and_stats(tmp_path, bank):
    rollouts, _, _ = _rollouts(tmp_path, bank)
    judged = tmp_path / "work" / "judged.jsonl"
    with FakeOpenAIServer(reply=judge_reply) as judge:
        summary = run_judge(rollouts, judged, _config(judge), JudgeConfig(max_attempts=3))
        calls = judge.calls
    # q1: 2 candidates judged; q2: c0 twice (malformed once), c1 three times, c3 once
    assert len(calls) == 2 + 2 + 3 + 1
    assert summary.judge_calls_saved == 3 and summary.prescreen_failed == 3
    assert summary.retries == 3 and summary.incomplete_questions == 0
    first = calls[0].body
    assert first["response_format"]["type"] == "json_schema"
    assert first["messages"][0]["content"][0]["type"] == "image_url"
    assert "<Groundtruth>\nA. Mass\n</Groundtruth>" in prompt_text(first)

    rows = {r["id"]: r for r in load_judged(judged)}
    q1 = rows["q1"]["candidates"]
    assert [c["status"] for c in q1] == ["positive", "negative", "negative", "negative"]
    assert q1[1]["verdict"]["Reflection_Presence"] == "No" and q1[1]["reason"] == "judge: No on Reflection_Presence"
    assert q1[2]["prescreen"] == "wrong" and q1[2]["judge_attempts"] == 0
    assert q1[2]["reason"] == "pre-screen: answered B, ground truth A"
    assert q1[3]["prescreen"] == "unparsed" and q1[3]["verdict"]["Answer_Correctness"] == "No"
    q2 = rows["q2"]["candidates"]
    assert q2[0]["status"] == "positive" and q2[0]["judge_attempts"] == 2
    assert q2[1]["status"] == "unjudged" and q2[1]["judge_attempts"] == 3
    assert "malformed verdict after 3 attempt(s)" in q2[1]["reason"] and q2[1]["judge_raw"]
    assert rows["q2"]["complete"] is True

    stats = compute_stats(rows.values())
    assert stats["judge_calls"]["made"] == 8 and stats["judge_calls"]["saved_by_prescreen"] == 3
    assert stats["status"] == {"positive": 3, "negative": 4, "unjudged": 1}
    assert stats["criteria"]["Reflection_Presence"] == {"yes": 3, "no": 1, "rated": 4, "pass_rate": 0.75}
    assert stats["tokens"]["judge"]["prompt_tokens"] > 0

    records, report = build_pairs(rows.values(), PairingPolicy())
    first = records[0]
    assert (first["question_id"], first["chosen_index"], first["rejected_index"], first["rejected_hard"]) == \
        ("q1", 0, 1, True)
    assert report.pairs == 3  # q1: one positive; q2: two positives, negatives c2 (prescreen) reused

    with FakeOpenAIServer(reply=judge_reply) as judge:  # rerun: everything complete, no call
        again = run_judge(rollouts, judged, _config(judge), JudgeConfig())
        assert judge.call_count == 0 and again.already_done == 2


def test_send_all_judges_prescreen_failures_too(tmp_path, bank):
    rollouts, _, _ = _rollouts(tmp_path, bank)
    with FakeOpenAIServer(reply=judge_reply) as judge:
        summary = run_judge(rollouts, tmp_path / "all.jsonl", _config(judge), JudgeConfig(send_all=True, max_attempts=1))
        assert judge.call_count == 8
    assert summary.judge_calls_saved == 0 and summary.prescreen_failed == 3
    rows = {r["id"]: r for r in load_judged(tmp_path / "all.jsonl")}
    wrong = rows["q1"]["candidates"][2]
    assert wrong["judge_attempts"] == 1 and wrong["verdict"]["Answer_Correctness"] == "No"
    assert wrong["status"] == "negative" and wrong["reason"].startswith("pre-screen: answered B")
    stats = compute_stats(rows.values())
    assert stats["prescreen_vs_judge"]["both_wrong"] == 3  # the cut-off q1 c3 is "unparsed" yet judged wrong


def test_failed_judge_calls_leave_questions_incomplete_until_a_rerun(tmp_path, bank):
    rollouts, _, _ = _rollouts(tmp_path, bank)
    judged = tmp_path / "judged.jsonl"
    with FakeOpenAIServer(reply=judge_reply, faults=[Fault.server_error(500)] * 50) as judge:
        summary = run_judge(rollouts, judged, _config(judge), JudgeConfig(max_attempts=2))
    assert summary.incomplete_questions == 2
    rows = {r["id"]: r for r in load_judged(judged)}
    failed = rows["q1"]["candidates"][0]
    assert failed["status"] == "unjudged" and "judge call failed" in failed["reason"]
    assert rows["q1"]["candidates"][2]["status"] == "negative"  # the pre-screen result is kept
    with FakeOpenAIServer(reply=judge_reply) as judge:
        again = run_judge(rollouts, judged, _config(judge), JudgeConfig(max_attempts=3))
    assert again.incomplete_questions == 0 and again.judged_questions == 2
    assert {r["id"]: r["complete"] for r in load_judged(judged)} == {"q1": True, "q2": True}


def test_mmrp_command_chains_the_three_stages(tmp_path, bank):
    from mede2_plugin.cli import main

    data = tmp_path / "data"
    with FakeOpenAIServer(reply=m1_reply) as m1, FakeOpenAIServer(reply=judge_reply) as judge:
        status = main(["mmrp", "--questions", str(bank), "--work-dir", str(tmp_path / "work"), "--out-dir", str(data),
                       "--num-candidates", "4", "--max-tokens", "128",
                       "--m1-backend", "openai", "--m1-model", "fake", "--m1-base-url", m1.base_url,
                       "--m1-no-progress", "--judge-backend", "openai", "--judge-model", "fake",
                       "--judge-base-url", judge.base_url, "--judge-max-retries", "0", "--judge-no-progress",
                       "--positive-use", "all", "--pairs-per-question", "2"])
    assert status == 0
    info = json.loads((data / "dataset_info.json").read_text())
    assert info["mede2_stage2_judged"]["mede2_pairing"]["positive_use"] == "all"
    pairs = list(read_jsonl(data / "mede2_stage2.jsonl"))
    assert len(pairs) == 2 + 2  # q1: 1 positive x 3 negatives, capped at 2; q2: 2 positives x 1 negative
    assert (tmp_path / "work" / "judged.stats.json").is_file() and (data / "mede2_stage2_stats.json").is_file()
    # the same pairs from Python on the judged file
    records, _ = build_pairs(load_judged(tmp_path / "work" / "judged.jsonl"),
                             PairingPolicy(positive_use="all", pairs_per_question=2))
    assert [r["id"] for r in records] == [p["id"] for p in pairs]


def test_bad_question_file_names_file_and_record(tmp_path):
    from mede2_plugin.cli import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "source": "s", "question": "q", "options": {"A": "a"}, "colour": 1}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:line 1 \('x'\).*colour"):
        run_rollouts(bad, tmp_path / "r.jsonl", BackendConfig(backend="openai", model="fake"))
    assert main(["rollout", "--questions", str(bad), "--output", str(tmp_path / "r.jsonl"),
                 "--m1-backend", "openai", "--m1-model", "fake"]) == 2


def test_questions_from_mede2_curate_are_already_caption_stripped():
    from mede2_plugin.core.questions import Question
    from mede2_plugin.mmrp.rollout import original_question, question_as_asked

    curated = Question.from_dict({**question_dict("q9", "x.png"), "question": "Which finding is shown?",
                                  "metadata": {"caption_stripping": {"original_question": "A dark square. Which?",
                                                                     "rewritten": True}}})
    asked, text_from = question_as_asked(curated)
    assert asked.question == "Which finding is shown?" and "curate" in text_from
    assert original_question(curated) == "A dark square. Which?"
    plain = Question.from_dict(question_dict("q8", "x.png"))
    assert question_as_asked(plain) == (plain, "question")
    assert question_as_asked(plain, stripped_field="absent")[1] == "question"


def test_gemini_judge_gets_images_and_the_json_schema(tmp_path, bank):
    """The default judge path: google-genai against a local Gemini wire-format server."""
    from mede2_plugin.testing import FakeGeminiServer
    from mede2_plugin.testing.fake_gemini import inline_images
    from mede2_plugin.testing.fake_gemini import prompt_text as gemini_text

    rollouts, _, _ = _rollouts(tmp_path, bank)

    def reply(body):
        return judge_reply({"messages": [{"role": "user", "content": gemini_text(body)}], "seed": None})

    with FakeGeminiServer(reply=reply) as server:
        config = BackendConfig(backend="gemini", model="gemini-2.5-pro", base_url=server.base_url, max_retries=0,
                               timeout_s=10, progress=False)
        summary = run_judge(rollouts, tmp_path / "judged.jsonl", config, JudgeConfig(max_attempts=1))
        bodies = [call.body for call in server.calls]
    assert (summary.judge_requests, summary.positives, summary.unjudged) == (5, 2, 2)  # one attempt: no retry
    generation = bodies[0]["generationConfig"]
    assert generation["responseMimeType"] == "application/json"
    schema = generation.get("responseJsonSchema") or generation.get("responseSchema")
    assert sorted(schema["required"]) == sorted(YES5)
    assert len(inline_images(bodies[0])) == 1
    rows = {r["id"]: r for r in load_judged(tmp_path / "judged.jsonl")}
    assert rows["q1"]["judge_backend"] == "gemini" and rows["q1"]["judge_model"] == "gemini-2.5-pro"
    assert compute_stats(rows.values())["cost_usd"]["judge"] > 0  # priced from the client's table


def test_judge_names_a_missing_image(tmp_path, bank):
    rollouts, _, _ = _rollouts(tmp_path, bank)
    (tmp_path / "media" / "scan.png").unlink()
    with pytest.raises(ValueError, match=r"rollouts.jsonl: question 'q1': image not found: .*scan.png"):
        run_judge(rollouts, tmp_path / "judged.jsonl", BackendConfig(backend="openai", model="fake"))
