"""Every reader of a model's reply, on a table of literal replies in the formats its role's real
models produce (OpenAI-compatible choices, Gemini candidates), served through the real client:
the shared JSON reader, the image-question classifier, the caption rewriter, the trace judge, the
MMRP judge, the difficulty solvers, MMRP rollouts with the pre-screen, evaluation scoring, and
judge-human agreement. Where a reader and the shared readers could disagree, the shared one is
what the reader uses."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mmrp_helpers import make_image, question_dict, write_questions
from reply_helpers import msg, parts, provider_samples

from mede2_plugin.client import BackendConfig
from mede2_plugin.core.jsonl import read_jsonl
from mede2_plugin.core.questions import Question
from mede2_plugin.core.replies import parse_json
from mede2_plugin.curate.captions import parse_rewrite
from mede2_plugin.curate.classify import parse_category
from mede2_plugin.curate.config import SolverConfig
from mede2_plugin.curate.difficulty import solver_attempts
from mede2_plugin.distill.config import TraceFilterConfig
from mede2_plugin.distill.filter import judge_verdict
from mede2_plugin.evaluate.agreement import score_value
from mede2_plugin.evaluate.scoring import score_question
from mede2_plugin.mmrp.criteria import VerdictError, parse_verdict
from mede2_plugin.mmrp.judge import _new_candidate
from mede2_plugin.mmrp.rollout import RolloutConfig, run_rollouts
from mede2_plugin.testing import FakeOpenAIServer

OBJ = {"category": "reasoning", "rationale": "several steps"}
J = json.dumps(OBJ)

# -- the shared JSON reader (mede2_plugin.core.replies.parse_json) -----------------------------------
JSON_SHAPES: dict[str, tuple[dict[str, Any], Any]] = {
    "bare": (msg(J), OBJ),
    "pretty-printed": (msg(json.dumps(OBJ, indent=2)), OBJ),
    "json-fence": (msg(f"```json\n{J}\n```"), OBJ),
    "bare-fence": (msg(f"```\n{J}\n```"), OBJ),
    "prose-before-after": (msg(f"Here is the classification:\n{J}\nLet me know if you need more."), OBJ),
    "prose-and-fence": (msg(f"Sure!\n```json\n{json.dumps(OBJ, indent=2)}\n```\nThe image alone is not enough."), OBJ),
    "same-object-twice": (msg(f"{J}\n\nFinal answer:\n```json\n{J}\n```"), OBJ),
    "think-block-with-braces": (msg(f'<think>The schema is {{"category": ...}}; it needs steps.</think>\n\n{J}'), OBJ),
    "r1-distill-no-open-tag": (msg(f"It needs steps {{clearly}}.\n</think>\n\n```json\n{J}\n```"), OBJ),
    "reasoning-content-apart": (msg(J, reasoning_content="Weighing {pattern} against {reasoning}."), OBJ),
    "gemini-thoughts": (parts(("**Classifying** the question {first}.", True), (J, False)), OBJ),
    "gemini-split-parts": (parts(('{"category": "reasoning", ', False), ('"rationale": "several steps"}', False)), OBJ),
    "array": (msg('["a", "b"]'), ["a", "b"]),
    "two-different-objects": (msg(f'Draft: {{"category": "recall"}}\nFinal: {J}'), None),
    "cut-off-while-thinking": (msg('<think>Maybe {"category": "reasoning"}', finish="length"), None),
    "truncated-json": (msg('{"category": "reasoning", "rationale": "sev', finish="length"), None),
    "no-json": (msg("I cannot classify this question."), None),
    "refusal-empty-content": (msg(None, refusal="I can't help with that."), None),
}

# -- image-question classifier (curate/classify.py) ---------------------------------------------
CLASSIFY: dict[str, tuple[dict[str, Any], str | None]] = {
    "openai-schema": (msg('{"category": "reasoning", "rationale": "management from history and imaging"}'), "reasoning"),
    "gemini-thoughts": (parts(("Is this recall or recognition?", True),
                              ('{"category": "knowledge_recall", "rationale": "a stain fact"}', False)), "knowledge_recall"),
    "fence-label-spelling": (msg('```json\n{"category": "Pattern Recognition", "rationale": "naming"}\n```'),
                             "pattern_recognition"),
    "prose-around": (msg('My answer:\n{"category": "knowledge-recall", "rationale": "a fact"}\nThanks.'),
                     "knowledge_recall"),
    "think-then-json": (msg('<think>Not pattern recognition, not knowledge recall.</think>\n'
                            '{"category": "reasoning", "rationale": "multi-step"}'), "reasoning"),
    "think-then-plain-label": (msg("<think>Could be pattern recognition at first sight.</think>\n"
                                   "Category: clinical reasoning"), "reasoning"),
    "plain-label": (msg("This is clearly knowledge recall."), "knowledge_recall"),
    "reasoning-content-apart": (msg('{"category": "pattern_recognition", "rationale": "naming"}',
                                    reasoning_content="Knowledge recall? No, it names a finding."), "pattern_recognition"),
    "unknown-label": (msg('{"category": "vibes", "rationale": "?"}'), None),
    "two-labels-in-prose": (msg("Either pattern recognition or knowledge recall."), None),
    "cut-off-while-thinking": (msg("<think>Pattern recognition, maybe", finish="length"), None),
}

# -- caption rewriter (curate/captions.py) ------------------------------------------------------
REWRITE = {"patient_info": "A 45-year-old woman has fever.", "question": "Which is the next step?",
           "removed": ["The CT shows a 3 cm mass."]}
RW = json.dumps(REWRITE)
CAPTIONS: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {
    "openai-schema": (msg(RW), REWRITE),
    "gemini-thoughts": (parts(("Find the image description.", True), (RW, False)), REWRITE),
    "fence-with-prose": (msg(f"Here is the rewrite:\n```json\n{json.dumps(REWRITE, indent=2)}\n```"), REWRITE),
    "think-then-json": (msg(f"<think>Remove {{the CT sentence}}.</think>\n{RW}"), REWRITE),
    "removed-as-string": (msg(json.dumps({**REWRITE, "removed": "The CT shows a 3 cm mass."})), REWRITE),
    "no-question": (msg('{"patient_info": "A 45-year-old woman has fever."}'), None),
    "refusal": (msg("I cannot rewrite medical questions."), None),
}

# -- trace judge (distill/filter.py) ------------------------------------------------------------
TRACE_JUDGE: dict[str, tuple[dict[str, Any], str]] = {
    "gemini-schema-thoughts": (parts(("Rating the steps.", True),
                                     ('{"logical_structure": 5, "coherence": 4, "comment": "sound"}', False)), "passed"),
    "fence-and-prose": (msg('Rating:\n```json\n{"logical_structure": 4, "coherence": 4, "comment": "ok"}\n```'),
                        "passed"),
    "think-block": (msg('<think>Score {1-5} each.</think>\n{"logical_structure": 5, "coherence": 5, "comment": "x"}'),
                    "passed"),
    "string-scores": (msg('{"logical_structure": "4/5", "coherence": "5", "comment": ""}'), "passed"),
    "float-scores": (msg('{"logical_structure": 4.0, "coherence": 3.0, "comment": "jumps"}'), "incoherent"),
    "out-of-range": (msg('{"logical_structure": 9, "coherence": 4}'), "judge_unparsable"),
    "boolean-score": (msg('{"logical_structure": true, "coherence": 4}'), "judge_unparsable"),
    "prose-only": (msg("The reasoning is coherent."), "judge_unparsable"),
}

# -- MMRP judge (mmrp/criteria.py) --------------------------------------------------------------
VERDICT = {"Answer_Correctness": "Yes", "Logical_Consistency": "Yes", "Image_Analysis_Involvement": "No",
           "No_Hallucination": "Yes", "Reflection_Presence": "Yes"}
V = json.dumps(VERDICT)
MMRP_JUDGE: dict[str, tuple[dict[str, Any], dict[str, str] | str]] = {
    "gemini-schema": (parts((V, False)), VERDICT),
    "gemini-thoughts": (parts(("Checking the five criteria {one by one}.", True), (V, False)), VERDICT),
    "gpt4o-fence": (msg(f"```json\n{json.dumps(VERDICT, indent=4)}\n```"), VERDICT),
    "prose-and-fence": (msg(f"Here is my evaluation:\n```json\n{V}\n```\nThe image is not analysed."), VERDICT),
    "prose-and-bare-json": (msg(f"Evaluation: {V}"), VERDICT),
    "r1-think-block": (msg(f'<think>Format: {{"Answer_Correctness": "Yes/No"}}.</think>\n\n{V}'), VERDICT),
    "r1-distill-no-open-tag": (msg(f"I must check each.\n</think>\n\n```json\n{V}\n```"), VERDICT),
    "reasoning-content-apart": (msg(V, reasoning_content="Criterion 3 {image} is missing."), VERDICT),
    "lower-case-and-booleans": (msg(json.dumps({"Answer_Correctness": "yes", "Logical_Consistency": True,
                                                "Image_Analysis_Involvement": " NO ", "No_Hallucination": "Yes.",
                                                "Reflection_Presence": "true"})), VERDICT),
    "template-echo": (msg(json.dumps(dict.fromkeys(VERDICT, "Yes/No"))), "must be"),
    "partially": (msg(json.dumps({**VERDICT, "Logical_Consistency": "Partially"})), "Logical_Consistency"),
    "missing-field": (msg(json.dumps({k: v for k, v in VERDICT.items() if k != "Reflection_Presence"})), "missing"),
    "duplicate-key": (msg(V[:-1] + ', "Answer_Correctness": "No"}'), "twice"),
    "two-different-verdicts": (msg(f"Draft: {V}\nFinal: {json.dumps({**VERDICT, 'Answer_Correctness': 'No'})}"),
                               "not a JSON object"),
    "prose-only": (msg("All five criteria are met."), "not a JSON object"),
    "cut-off-while-thinking": (msg("<think>Looking at the image", finish="length"), "not a JSON object"),
}

# -- letters: difficulty solvers, evaluation (shared extractor answers.extract_choice) ------------
MM = Question(id="m", source="t", question="The radiograph shows a line. Which finding?",
              options={"A": "Mass", "B": "Fracture", "C": "Normal"}, answer="B")
LETTERS: dict[str, tuple[dict[str, Any], str | None, bool]] = {  # reply, letter, truncated
    "boxed": (msg("The cortex is interrupted. \\boxed{B}"), "B", False),
    "o1-plain-bold": (msg("**B. Fracture**"), "B", False),
    "gpt4o-phrase": (msg("The cortex is interrupted, so the answer is (B) Fracture."), "B", False),
    "qwq-think": (msg("<think>Maybe \\boxed{A}? No, a line.</think>\n\n\\boxed{B}"), "B", False),
    "r1-distill-no-open-tag": (msg("Maybe A. No.\n</think>\n\nThe answer is \\boxed{B}."), "B", False),
    "deepseek-reasoning-content": (msg("\\boxed{B}", reasoning_content="First I thought \\boxed{A}."), "B", False),
    "gemini-thoughts": (parts(("\\boxed{A} at first sight", True), ("Final: \\boxed{B}", False)), "B", False),
    "paper-format-boxed-text": (msg("<think>A line.</think><answer>\\boxed{\\text{B}}</answer>"), "B", False),
    "boxed-letter-and-text": (msg("<think>A line.</think><answer>\\boxed{B. Fracture}</answer>"), "B", False),
    "option-text": (msg("Fracture"), "B", False),
    "vllm-parser-answer-tags": (msg("<answer>\\boxed{B}</answer>", reasoning_content="A line."), "B", False),
    "self-contradicting-box": (msg("\\boxed{B. Mass}"), None, False),
    "several-letters": (msg("\\boxed{A or B}"), None, False),
    "cut-off-while-thinking": (msg("<think>It could be \\boxed{B", finish="length"), None, True),
    "cut-off-in-reasoning-content": (msg(None, finish="length", reasoning_content="It could be"), None, True),
}

# -- MMRP rollouts of M1 and the pre-screen (mmrp/rollout.py, mmrp/prescreen.py) ---------------
ROLLOUTS: list[tuple[str, dict[str, Any], str, str]] = [  # name, reply, candidate text, pre-screen
    ("local-m1", msg("<think>The image shows a mass. Wait, verify.</think><answer>\\boxed{A}</answer>"),
     "<think>The image shows a mass. Wait, verify.</think><answer>\\boxed{A}</answer>", "pass"),
    ("vllm-reasoning-parser", msg("<answer>\\boxed{A}</answer>", reasoning_content="The image shows a mass."),
     "<think>The image shows a mass.</think><answer>\\boxed{A}</answer>", "pass"),
    ("vllm-reasoning-field", msg("\n\n<answer>\\boxed{B}</answer>", reasoning="A fracture line."),
     "<think>A fracture line.</think>\n\n<answer>\\boxed{B}</answer>", "wrong"),
    ("vllm-parser-cut-off", msg(None, finish="length", reasoning_content="It is a mass and"),
     "<think>It is a mass and", "unparsed"),
    ("cut-off", msg("<think>It is unclear and", finish="length"), "<think>It is unclear and", "unparsed"),
    ("answer-only", msg("\\boxed{A}"), "\\boxed{A}", "pass"),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> dict[str, dict[str, Any]]:
    """All literal replies through the real client: JSON roles with a response schema, as the stages ask."""
    folder = tmp_path_factory.mktemp("replies")
    json_tables = {"json": JSON_SHAPES, "classify": CLASSIFY, "captions": CAPTIONS, "trace_judge": TRACE_JUDGE,
                   "mmrp_judge": MMRP_JUDGE}
    json_replies = {f"{t}.{k}": row[0] for t, table in json_tables.items() for k, row in table.items()}
    rows = provider_samples(json_replies, folder / "json", schema={"type": "object"})
    rows.update(provider_samples({f"letters.{k}": row[0] for k, row in LETTERS.items()}, folder / "text"))
    return rows


def sample(served: dict[str, dict[str, Any]], key: str) -> dict[str, Any]:
    return served[key]["samples"][0]


@pytest.mark.parametrize("name", list(JSON_SHAPES))
def test_shared_json_reader(name: str, served: dict[str, dict[str, Any]]) -> None:
    reply = sample(served, f"json.{name}")
    assert parse_json(reply["text"]) == JSON_SHAPES[name][1]
    assert reply["parsed"] == JSON_SHAPES[name][1]  # what run_batch stores for schema requests


@pytest.mark.parametrize("name", list(CLASSIFY))
def test_classifier_reader(name: str, served: dict[str, dict[str, Any]]) -> None:
    reply = sample(served, f"classify.{name}")
    assert parse_category(reply)[0] == CLASSIFY[name][1]
    assert parse_category({**reply, "parsed": None})[0] == CLASSIFY[name][1]  # stored rows without ``parsed``


@pytest.mark.parametrize("name", list(CAPTIONS))
def test_caption_rewriter_reader(name: str, served: dict[str, dict[str, Any]]) -> None:
    reply = sample(served, f"captions.{name}")
    assert parse_rewrite(reply) == CAPTIONS[name][1]
    assert parse_rewrite({**reply, "parsed": None}) == CAPTIONS[name][1]


@pytest.mark.parametrize("name", list(TRACE_JUDGE))
def test_trace_judge_reader(name: str, served: dict[str, dict[str, Any]]) -> None:
    row = served[f"trace_judge.{name}"]
    assert judge_verdict(row, TraceFilterConfig(min_judge_score=4))[0] == TRACE_JUDGE[name][1]


@pytest.mark.parametrize("name", list(MMRP_JUDGE))
def test_mmrp_judge_reader(name: str, served: dict[str, dict[str, Any]]) -> None:
    text, expected = sample(served, f"mmrp_judge.{name}")["text"], MMRP_JUDGE[name][1]
    if isinstance(expected, dict):
        assert parse_verdict(text) == expected
    else:
        with pytest.raises(VerdictError, match=expected):
            parse_verdict(text)


@pytest.mark.parametrize("name", list(LETTERS))
def test_solver_and_evaluation_readers(name: str, served: dict[str, dict[str, Any]]) -> None:
    row, (_, letter, truncated) = served[f"letters.{name}"], LETTERS[name]
    solver = SolverConfig(backend=BackendConfig(backend="openai", model="solver"))
    (attempt,) = solver_attempts(MM, solver, row)["attempts"]
    assert (attempt["extracted"], attempt["correct"]) == (letter, letter == "B")
    score = score_question(MM, row)
    assert (score.letters, score.truncated) == ([letter], [truncated])


def test_rollout_and_prescreen_readers(tmp_path) -> None:
    bank = write_questions(tmp_path / "questions.jsonl", [question_dict("q1", make_image(tmp_path / "scan.png"))])
    with FakeOpenAIServer(reply=lambda body, index: ROLLOUTS[index][1]) as m1:
        config = BackendConfig(backend="openai", model="m1", base_url=m1.base_url, max_retries=0, progress=False,
                               api_key_env="MEDE2_TEST_UNUSED_KEY")
        summary = run_rollouts(bank, tmp_path / "rollouts.jsonl", config, RolloutConfig(num_candidates=len(ROLLOUTS)))
    assert summary.ok == 1
    (record,) = read_jsonl(tmp_path / "rollouts.jsonl")
    for (name, _, text, outcome), candidate in zip(ROLLOUTS, record["candidates"]):
        judged = _new_candidate(candidate, record["question"])
        assert (name, candidate["text"], judged["prescreen"]) == (name, text, outcome)


@pytest.mark.parametrize("raw, score", [
    ({"Answer_Correctness": "Yes", "Logical_Consistency": "No", "Reflection_Presence": "yes"}, 2.0),
    ({"Answer_Correctness": True, "Logical_Consistency": False, "Reflection_Presence": "Yes."}, 2.0),
    (V, 4.0),
    (f"```json\n{V}\n```", 4.0),
    (f"Here is my evaluation: {V}", 4.0),
    ("3.5", 3.5),
    (4, 4.0),
])
def test_agreement_score_reader(raw: Any, score: float) -> None:
    assert score_value(raw, "judge.jsonl:record 1") == score


def test_agreement_score_reader_names_the_record() -> None:
    with pytest.raises(ValueError, match="judge.jsonl:record 2: score 'great' is neither"):
        score_value("great", "judge.jsonl:record 2")
