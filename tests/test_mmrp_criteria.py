"""Verdict parsing, classification, the Appendix-A judge prompt, and the pre-screen."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mede2_plugin.core.prompts import render
from mede2_plugin.mmrp.criteria import (
    CRITERIA,
    VERDICT_SCHEMA,
    VerdictError,
    classify,
    is_hard_negative,
    parse_verdict,
)
from mede2_plugin.mmrp.judge import judge_messages, judge_prompt
from mede2_plugin.mmrp.prescreen import prescreen

FIXTURES = Path(__file__).parent / "fixtures" / "mmrp"
GOOD = {name: "Yes" for name in CRITERIA}


def test_valid_verdicts_parse_to_yes_no():
    assert parse_verdict(json.dumps(GOOD)) == GOOD
    mixed = {**GOOD, "No_Hallucination": "no", "Reflection_Presence": " NO "}
    parsed = parse_verdict("```json\n" + json.dumps(mixed, indent=2) + "\n```")
    assert parsed["No_Hallucination"] == "No" and parsed["Reflection_Presence"] == "No"
    assert parse_verdict(json.dumps({**GOOD, "comment": "fine"})) == GOOD  # extra fields ignored
    # issue 14: the shared JSON reader finds the verdict in prose, and true/false are Yes/No
    assert parse_verdict("Here it is: " + json.dumps(GOOD)) == GOOD
    assert parse_verdict(json.dumps({**GOOD, "Answer_Correctness": True})) == GOOD


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("Looks good to me.", "not a JSON object"),
    (json.dumps([GOOD]), "expected a JSON object"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "Reflection_Presence"}), "missing field"),
    (json.dumps({**GOOD, "Logical_Consistency": "Yes/No"}), "Logical_Consistency"),
    (json.dumps({**GOOD, "Logical_Consistency": "Partially"}), "Logical_Consistency"),
    (('{"Answer_Correctness": "Yes", "Answer_Correctness": "No", "Logical_Consistency": "Yes", '
      '"Image_Analysis_Involvement": "Yes", "No_Hallucination": "Yes", "Reflection_Presence": "Yes"}'), "twice"),
])
def test_malformed_verdicts_are_rejected(text, message):
    with pytest.raises(VerdictError, match=message):
        parse_verdict(text)


def test_classification_and_hard_negatives():
    assert classify(GOOD) == "positive"
    assert classify({**GOOD, "Reflection_Presence": "No"}) == "negative"
    assert classify({**GOOD, "Reflection_Presence": ""}) == "unjudged"
    assert classify({**GOOD, "Reflection_Presence": "No"}, criteria=CRITERIA[:4]) == "positive"
    assert is_hard_negative({**GOOD, "Logical_Consistency": "No"})
    assert not is_hard_negative({**GOOD, "Answer_Correctness": "No", "Logical_Consistency": "No"})
    assert not is_hard_negative(GOOD)


def test_schema_requires_the_five_yes_no_fields():
    assert VERDICT_SCHEMA["required"] == list(CRITERIA)
    assert all(VERDICT_SCHEMA["properties"][n]["enum"] == ["Yes", "No"] for n in CRITERIA)


def _normalise(text: str) -> str:
    text = re.sub(r"(\w)-\s+(\w)", r"\1\2", text)  # the PDF's hyphenation at line ends ("ques- tion")
    return re.sub(r"\s+", " ", text).strip()


def test_judge_template_is_the_papers_appendix_a_prompt_word_for_word():
    paper = _normalise((FIXTURES / "appendix_a_judge_prompt.txt").read_text(encoding="utf-8").replace("\\%s", "%s"))
    ours = _normalise(render("prompts/mmrp_judge.j2", question="%s", groundtruth="%s", answer="%s"))
    assert ours == paper


def test_judge_message_carries_images_question_groundtruth_and_candidate(tmp_path):
    from mmrp_helpers import make_image

    from mede2_plugin.core.chat_format import image_part  # noqa: F401 - same part format as the rollouts

    image = make_image(tmp_path / "a.png")
    question = {"question": "What is seen?", "options": {"A": "Mass", "B": "Fracture"}, "answer": "B",
                "patient_info": "A 30-year-old man."}
    messages = judge_messages(question, "<think>t</think><answer>\\boxed{B}</answer>", [image])
    parts = messages[0]["content"]
    assert parts[0]["type"] == "image_url" and parts[0]["image_url"]["url"].startswith("data:image/png;base64,")
    text = parts[-1]["text"]
    assert "<Question>\nA 30-year-old man. What is seen?\nA. Mass\nB. Fracture\n</Question>" in text
    assert "<Groundtruth>\nB. Fracture\n</Groundtruth>" in text
    assert "<Answer>\n<think>t</think><answer>\\boxed{B}</answer>\n</Answer>" in text
    assert text == judge_prompt(question, "<think>t</think><answer>\\boxed{B}</answer>")


@pytest.mark.parametrize("text, outcome, letter", [
    ("<think>the square is a mass</think><answer>\\boxed{A}</answer>", "pass", "A"),
    ("<think>looks broken</think><answer>\\boxed{B}</answer>", "wrong", "B"),
    ("<think>I cannot decide and ran out of", "unparsed", None),
    ("<think>hmm</think><answer>no idea</answer>", "unparsed", None),
])
def test_prescreen(text, outcome, letter):
    result = prescreen(text, {"A": "Mass", "B": "Fracture", "C": "Normal"}, "A")
    assert (result.outcome, result.extracted) == (outcome, letter)
    assert result.passed == (outcome == "pass")
    assert (result.reason == "") == (outcome == "pass")
