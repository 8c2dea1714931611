"""Every format real teachers answer in, as literal provider replies, through the real client into
the trace parser and the trace filter's rule checks: the reasoning, the final answer, the letter
and the verdict each gets. A kept trace's Stage-I target is in Appendix-A form exactly once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from reply_helpers import msg, parts, provider_samples

from mede2_plugin.core.answers import extract_choice, has_think_answer_structure
from mede2_plugin.core.chat_format import assistant_response
from mede2_plugin.core.questions import Question
from mede2_plugin.distill.build import sft_record
from mede2_plugin.distill.config import TeacherConfig, TraceFilterConfig
from mede2_plugin.distill.filter import rule_failures
from mede2_plugin.distill.generate import teacher_traces

Q = Question(id="q", source="t", question="A man with a proximal deep vein thrombosis needs treatment. Which drug?",
             options={"A": "Aspirin", "B": "Heparin"}, answer="B")
R = ("The patient has a proximal deep vein thrombosis and needs anticoagulation at once. Aspirin is an "
     "antiplatelet agent and does not treat venous clots. Heparin acts immediately. Wait, check: yes, heparin.")
E = ("Expanding: the clot is venous, so platelets are not the target. Aspirin would not stop it growing; "
     "heparin potentiates antithrombin and acts at once. Checking the options again, heparin is right.")
FILTER = TraceFilterConfig(min_reasoning_chars=100, max_reasoning_chars=5000, judge=None)


@dataclass
class Case:
    reply: dict[str, Any]
    reasoning: str | None
    final: str
    letter: str | None
    verdict: str
    source: str
    mode: str = "auto"
    expansion: dict[str, Any] | None = None
    filter: dict[str, Any] = field(default_factory=dict)


CASES: dict[str, Case] = {
    # -- reasoning apart: reasoning_content / reasoning (DeepSeek's API, vLLM with a reasoning parser)
    "deepseek-api-plain": Case(msg("The answer is \\boxed{B}.", reasoning_content=R),
                               R, "The answer is \\boxed{B}.", "B", "passed", "reasoning_content", "reasoning_content"),
    "deepseek-api-answer-tags": Case(msg("<answer>It is B. \\boxed{B}</answer>", reasoning_content=R),
                                     R, "It is B. \\boxed{B}", "B", "passed", "reasoning_content"),
    "vllm-parser-stray-close": Case(msg("</think>\n\n<answer>\nIt is B. \\boxed{B}\n</answer>", reasoning_content=R),
                                    R, "It is B. \\boxed{B}", "B", "passed", "reasoning_content"),
    "vllm-reasoning-field": Case(msg("\n\nThe answer is \\boxed{B}.", reasoning=R),
                                 R, "The answer is \\boxed{B}.", "B", "passed", "reasoning_content", "think_tags"),
    # -- reasoning in the text (Qwen3, QwQ, the paper's own format, R1 distills)
    "qwq-think-plain": Case(msg(f"<think>\n{R}\n</think>\n\nThe answer is \\boxed{{B}}."),
                            R, "The answer is \\boxed{B}.", "B", "passed", "think_tags"),
    "paper-format": Case(msg(f"<think>{R}</think><answer>It is B. \\boxed{{B}}</answer>"),
                         R, "It is B. \\boxed{B}", "B", "passed", "think_tags"),
    "paper-format-mode-reasoning-content": Case(msg(f"<think>{R}</think><answer>It is B. \\boxed{{B}}</answer>"),
                                                R, "It is B. \\boxed{B}", "B", "passed", "think_tags",
                                                "reasoning_content"),
    "paper-format-prose-between": Case(msg(f"<think>\n{R}\n</think>\nSo heparin.\n<answer>\n\\boxed{{B}}\n</answer>\n"),
                                       R, "\\boxed{B}", "B", "passed", "think_tags"),
    "r1-distill-no-open-tag": Case(msg(f"{R}\n</think>\n\nThe answer is \\boxed{{B}}."),
                                   R, "The answer is \\boxed{B}.", "B", "passed", "think_tags"),
    "r1-distill-no-open-tag-answer-tags": Case(msg(f"{R}\n</think>\n\n<answer>\\boxed{{B}}</answer>"),
                                               R, "\\boxed{B}", "B", "passed", "think_tags", "think_tags"),
    # -- the final answer's forms, decided by the shared extractor
    "boxed-letter-and-text": Case(msg(f"<think>{R}</think><answer>\\boxed{{B. Heparin}}</answer>"),
                                  R, "\\boxed{B. Heparin}", "B", "passed", "think_tags"),
    "boxed-text-letter": Case(msg(f"<think>{R}</think><answer>\\boxed{{\\text{{B}}}}</answer>"),
                              R, "\\boxed{\\text{B}}", "B", "passed", "think_tags"),
    "option-text-boxed-not-required": Case(msg(f"<think>{R}</think><answer>Heparin</answer>"),
                                           R, "Heparin", "B", "passed", "think_tags", filter={"require_boxed": False}),
    # -- Gemini thought parts (thoughts included)
    "gemini-thoughts": Case(parts((R, True), ("The answer is \\boxed{B}.", False)),
                            R, "The answer is \\boxed{B}.", "B", "passed", "reasoning_content"),
    "gemini-thoughts-paper-format-text": Case(parts((R, True), ("<think>At once.</think><answer>\\boxed{B}</answer>", False)),
                                              R, "\\boxed{B}", "B", "passed", "reasoning_content"),
    "gemini-no-thoughts-paper-format": Case(parts((f"<think>{R}</think><answer>It is B. \\boxed{{B}}</answer>", False)),
                                            R, "It is B. \\boxed{B}", "B", "passed", "think_tags"),
    "gemini-split-text-parts": Case(parts((R, True), ("<answer>It is B. ", False), ("\\boxed{B}</answer>", False)),
                                    R, "It is B. \\boxed{B}", "B", "passed", "reasoning_content"),
    # -- summary-only teachers (o1) and their expansion
    "o1-summary": Case(msg("Heparin treats the clot at once. \\boxed{B}"),
                       None, "Heparin treats the clot at once. \\boxed{B}", "B", "no_reasoning", "summary", "summary"),
    "o1-summary-expanded": Case(msg("Heparin treats the clot at once. \\boxed{B}"),
                                E, "Heparin treats the clot at once. \\boxed{B}", "B", "passed", "expanded", "summary",
                                expansion=msg(E)),
    "o1-answer-tags-expanded-paper-format": Case(msg("<answer>Heparin. \\boxed{B}</answer>"),
                                                 E, "Heparin. \\boxed{B}", "B", "passed", "expanded", "summary",
                                                 expansion=msg(f"<think>{E}</think><answer>\\boxed{{B}}</answer>")),
    "o1-expansion-with-answer-block": Case(msg("Heparin. \\boxed{B}"), E, "Heparin. \\boxed{B}", "B", "passed",
                                           "expanded", "summary", expansion=msg(f"{E}\n<answer>\\boxed{{B}}</answer>")),
    # -- invalid traces: dropped, with their reason
    "cut-off-while-thinking": Case(msg(f"<think>{R} Then", finish="length"),
                                   f"{R} Then", "", None, "truncated", "think_tags"),
    "deepseek-api-cut-off-in-reasoning": Case(msg(None, finish="length", reasoning_content=R),
                                              R, "", None, "truncated", "reasoning_content"),
    "think-never-closed": Case(msg(f"<think>{R}"), R, "", None, "truncated", "think_tags"),
    "answer-never-closed": Case(msg(f"<think>{R}</think><answer>\\boxed{{B}}"),
                                R, "<answer>\\boxed{B}", "B", "truncated", "think_tags"),
    "option-text-no-box": Case(msg(f"<think>{R}</think><answer>Heparin</answer>"),
                               R, "Heparin", "B", "missing_boxed", "think_tags"),
    "no-box": Case(msg(f"<think>{R}</think>\n\nThe answer is B."), R, "The answer is B.", "B", "missing_boxed",
                   "think_tags"),
    "wrong-answer": Case(msg(f"<think>{R}</think><answer>\\boxed{{A}}</answer>"),
                         R, "\\boxed{A}", "A", "wrong_answer", "think_tags"),
    "no-reasoning": Case(msg("<answer>\\boxed{B}</answer>"), None, "\\boxed{B}", "B", "no_reasoning", "summary"),
    "no-reasoning-mode-reasoning-content": Case(msg("The answer is \\boxed{B}."), None, "The answer is \\boxed{B}.",
                                                "B", "no_reasoning", "none", "reasoning_content"),
    "repeated-answer-blocks": Case(msg(f"<think>{R}</think><answer>\\boxed{{B}}</answer><answer>\\boxed{{B}}</answer>"),
                                   R, "<answer>\\boxed{B}</answer><answer>\\boxed{B}</answer>", "B", "bad_structure",
                                   "think_tags"),
    "nested-answer-blocks": Case(msg(f"<think>{R}</think><answer><answer>\\boxed{{B}}</answer></answer>"),
                                 R, "<answer><answer>\\boxed{B}</answer></answer>", "B", "bad_structure", "think_tags"),
    "answer-block-in-reasoning": Case(msg("\\boxed{B}", reasoning_content=f"{R} <answer>B</answer>"),
                                      f"{R} <answer>B</answer>", "\\boxed{B}", "B", "bad_structure", "reasoning_content"),
    "too-short": Case(msg("<think>Heparin.</think><answer>\\boxed{B}</answer>"),
                      "Heparin.", "\\boxed{B}", "B", "too_short", "think_tags"),
    "too-long": Case(msg(f"<think>{R * 30}</think><answer>\\boxed{{B}}</answer>"),
                     R * 30, "\\boxed{B}", "B", "too_long", "think_tags"),
}


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> dict[str, dict[str, Any]]:
    """Every literal reply (and expansion reply) served once through the real client."""
    replies = {name: case.reply for name, case in CASES.items()}
    replies.update({f"{name}.expansion": case.expansion for name, case in CASES.items() if case.expansion})
    return provider_samples(replies, tmp_path_factory.mktemp("teacher_replies"))


@pytest.mark.parametrize("name", list(CASES))
def test_teacher_reply_format(name: str, served: dict[str, dict[str, Any]]) -> None:
    case = CASES[name]
    teacher = TeacherConfig(name="t", reasoning=case.mode, expand_summary=case.expansion is not None)
    expansions = {f"{Q.id}/0": served[f"{name}.expansion"]} if case.expansion else {}
    (trace,) = teacher_traces(Q, teacher, served[name], expansions)
    assert (trace["reasoning"], trace["final"], trace["source"]) == (case.reasoning, case.final, case.source)
    assert extract_choice(trace["final"], Q.options) == case.letter
    failures = rule_failures(trace, Q, TraceFilterConfig(**{**vars(FILTER), **case.filter}))
    assert (failures[0] if failures else "passed") == case.verdict
    if case.verdict == "passed":  # the Stage-I target: one <think>, one <answer> holding the answer
        sample = sft_record(Q, trace, Q.id, "teacher")
        target = assistant_response(sample["reasoning"], sample["final"])
        assert has_think_answer_structure(target)
        assert target == f"<think>\n{case.reasoning}\n</think><answer>\n{case.final}\n</answer>"
