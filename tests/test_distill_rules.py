"""Decision logic of distillation without calls: reading teacher replies, the trace filter's rule
checks and judge verdicts, the selection rule, the dataset records and entries, settings."""

from __future__ import annotations

import pytest

from mede2_plugin.core.answers import has_think_answer_structure
from mede2_plugin.core.questions import Question
from mede2_plugin.core.settings import ConfigError
from mede2_plugin.distill.build import (
    dataset_entries,
    messages_record,
    rank_traces,
    sft_record,
)
from mede2_plugin.distill.config import (
    DistillConfig,
    SelectConfig,
    TeacherConfig,
    TraceFilterConfig,
    default_teachers,
    load_distill_config,
)
from mede2_plugin.distill.filter import judge_verdict, rule_failures
from mede2_plugin.distill.generate import needs_expansion
from mede2_plugin.distill.traces import expansion_text, parse_reply

Q = Question(id="q", source="t", question="Which drug?", options={"A": "Aspirin", "B": "Heparin"}, answer="B")
LONG = "First consider the history, then the examination, then weigh each option carefully. " * 4


@pytest.mark.parametrize("sample, mode, expected", [
    ({"text": "\\boxed{B}", "reasoning": "thought"}, "auto", ("thought", "\\boxed{B}", "reasoning_content", False)),
    ({"text": "</think>\\boxed{B}", "reasoning": "thought"}, "auto", ("thought", "\\boxed{B}", "reasoning_content", False)),
    ({"text": "<think>\nthought\n</think>\n\nSo \\boxed{B}"}, "auto", ("thought", "So \\boxed{B}", "think_tags", False)),
    ({"text": "thought</think>\\boxed{B}"}, "think_tags", ("thought", "\\boxed{B}", "think_tags", False)),
    ({"text": "<think>thought that never ends"}, "auto", ("thought that never ends", "", "think_tags", True)),
    ({"text": "Summary \\boxed{B}"}, "auto", (None, "Summary \\boxed{B}", "summary", False)),
    ({"text": "Summary \\boxed{B}", "reasoning": "hidden"}, "summary", (None, "Summary \\boxed{B}", "summary", False)),
    ({"text": "\\boxed{B}"}, "reasoning_content", (None, "\\boxed{B}", "none", False)),
    ({"text": "\\boxed{B}"}, "think_tags", (None, "\\boxed{B}", "none", False)),
])
def test_parse_reply_modes(sample, mode, expected):
    parsed = parse_reply(sample, mode)
    assert (parsed.reasoning, parsed.final, parsed.source, parsed.unclosed_think) == expected


def test_expansion_text_and_when_to_expand():
    assert expansion_text({"text": "<think>full reasoning</think> answer"}) == "full reasoning"
    assert expansion_text({"text": "  full reasoning \\boxed{B} "}) == "full reasoning \\boxed{B}"
    o1 = TeacherConfig(name="o1", reasoning="summary", expand_summary=True)
    summary = parse_reply({"text": "Because... \\boxed{B}"}, "summary")
    assert needs_expansion(Q, o1, summary, "stop") is None
    assert needs_expansion(Q, o1, parse_reply({"text": "\\boxed{A}"}, "summary"), "stop") == "wrong_answer"
    assert needs_expansion(Q, o1, summary, "length") == "truncated"
    assert needs_expansion(Q, TeacherConfig(name="x", expand_summary=True, expand_only_correct=False),
                           parse_reply({"text": "\\boxed{A}"}, "summary"), "stop") is None
    assert needs_expansion(Q, TeacherConfig(name="r1"), summary, "stop") == "not_needed"
    assert needs_expansion(Q, o1, parse_reply({"text": "\\boxed{B}", "reasoning": "r"}, "auto"), "stop") == "not_needed"


def trace(**changes) -> dict:
    return {"id": "q/t/0", "question_id": "q", "teacher": "t", "sample": 0, "source": "think_tags",
            "reasoning": LONG, "final": "The answer is \\boxed{B}.", "finish_reason": "stop",
            "unclosed_think": False, "expansion": None, **changes}


@pytest.mark.parametrize("changes, failures", [
    ({}, []),
    ({"final": "\\boxed{A}"}, ["wrong_answer"]),
    ({"final": "The answer is B."}, ["missing_boxed"]),
    ({"final": "\\boxed{}"}, ["no_answer"]),
    ({"finish_reason": "length"}, ["truncated"]),
    ({"unclosed_think": True, "final": ""}, ["truncated", "missing_boxed", "no_answer", "bad_structure"]),
    ({"final": "So \\boxed{B"}, ["truncated", "missing_boxed", "no_answer"]),
    ({"expansion": {"status": "done", "finish_reason": "length"}}, ["truncated"]),
    ({"expansion": {"status": "pending"}}, ["pending_expansion"]),
    ({"reasoning": None, "source": "summary"}, ["no_reasoning"]),
    ({"reasoning": LONG + " </think> more"}, ["bad_structure"]),
    ({"final": "<answer>\\boxed{B}</answer>"}, ["bad_structure"]),
    ({"reasoning": "Too brief."}, ["too_short"]),
    ({"reasoning": LONG * 40}, ["too_long"]),
])
def test_trace_rule_checks(changes, failures):
    cfg = TraceFilterConfig(min_reasoning_chars=100, max_reasoning_chars=5000)
    assert rule_failures(trace(**changes), Q, cfg) == failures


def test_structure_check_matches_the_training_target():
    from mede2_plugin.core.chat_format import assistant_response

    assert has_think_answer_structure(assistant_response(LONG, "\\boxed{B}"))
    assert not rule_failures(trace(), Q, TraceFilterConfig(require_boxed=True, min_reasoning_chars=10))
    assert rule_failures(trace(final="B"), Q, TraceFilterConfig(require_boxed=False, min_reasoning_chars=10)) == []


@pytest.mark.parametrize("row, expected", [
    ({"samples": [{"text": '{"logical_structure": 5, "coherence": 4, "comment": "ok"}'}], "error": None},
     ("passed", {"logical_structure": 5, "coherence": 4, "score": 9, "comment": "ok"})),
    ({"samples": [{"text": "x", "parsed": {"logical_structure": "4/5", "coherence": 3}}], "error": None},
     ("incoherent", {"logical_structure": 4, "coherence": 3, "score": 7, "comment": ""})),
    ({"samples": [{"text": '{"logical_structure": 9, "coherence": 4}'}], "error": None},
     ("judge_unparsable", {"raw": '{"logical_structure": 9, "coherence": 4}'})),
    ({"samples": [{"text": "looks fine to me"}], "error": None}, ("judge_unparsable", {"raw": "looks fine to me"})),
    ({"samples": [], "error": "APIConnectionError"}, ("pending_judge", {"error": "APIConnectionError"})),
    (None, ("pending_judge", {"error": "no reply yet"})),
])
def test_judge_verdicts(row, expected):
    assert judge_verdict(row, TraceFilterConfig(min_judge_score=4)) == expected


def passing(teacher: str, sample: int, chars: int, score: int | None) -> dict:
    return {"id": f"q/{teacher}/{sample}", "teacher": teacher, "sample": sample, "reasoning_chars": chars,
            "judge": None if score is None else {"score": score}}


def test_selection_rule():
    teachers = ["r1", "qwq", "o1"]
    candidates = [passing("o1", 0, 900, 8), passing("qwq", 0, 500, 8), passing("r1", 1, 700, 8),
                  passing("r1", 0, 600, 8), passing("qwq", 1, 100, 10)]
    ranked = [r["id"] for r in rank_traces(candidates, SelectConfig(), teachers)]
    assert ranked == ["q/qwq/1", "q/r1/0", "q/r1/1", "q/qwq/0", "q/o1/0"]
    ranked = [r["id"] for r in rank_traces(candidates, SelectConfig(prefer="longer", teacher_order=["o1", "r1", "qwq"]),
                                           teachers)]
    assert ranked == ["q/qwq/1", "q/o1/0", "q/r1/1", "q/r1/0", "q/qwq/0"]
    no_judge = [passing("qwq", 0, 100, None), passing("r1", 0, 900, None)]
    assert rank_traces(no_judge, SelectConfig(), teachers)[0]["id"] == "q/r1/0"


def test_records_and_dataset_entries():
    chosen = trace(reasoning="  reasoning text  ", final=" The answer is \\boxed{B}. ")
    native = sft_record(Q, chosen, "q", "teacher")
    assert native["final"] == "The answer is \\boxed{B}." and native["reasoning"] == "reasoning text"
    assert sft_record(Q, chosen, "q", "boxed")["final"] == "\\boxed{B}"
    record = messages_record(native)
    assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant"]
    assert record["messages"][1]["content"].endswith("Put your final answer within \\boxed{}.")
    assert "images" not in record
    image_q = Question(id="i", source="t", question="Q?", options={"A": "a", "B": "b"}, answer="B", images=["x.png"])
    assert messages_record(sft_record(image_q, chosen, "i", "boxed"))["messages"][1]["content"].startswith("<image>Q?")
    config = DistillConfig()
    assert sorted(dataset_entries(config, with_images=False)) == ["mede2_stage1", "mede2_stage1_messages"]
    config.build.formats = ["messages"]
    (entry,) = dataset_entries(config, with_images=True).items()
    assert entry[0] == "mede2_stage1" and entry[1]["columns"] == {"messages": "messages", "images": "images"}


def test_distill_settings():
    names = [t.name for t in default_teachers()]
    assert names == ["deepseek-r1", "qwq-32b", "o1"]
    o1 = default_teachers()[2]
    assert o1.expand_summary and o1.reasoning == "summary" and o1.temperature is None and o1.max_tokens is None
    config = load_distill_config(None, ["filter.judge=null", "teachers.0.samples=4", "build.final=boxed"])
    assert config.filter.judge is None and config.teachers[0].samples == 4 and config.build.final == "boxed"
    assert config.teachers[0].backend.api_key_env == "DEEPSEEK_API_KEY"
    with pytest.raises(ConfigError, match="teacher names must differ"):
        load_distill_config({"teachers": [{"name": "a"}, {"name": "a"}]})
    with pytest.raises(ConfigError, match="reasoning must be one of"):
        load_distill_config(None, ["teachers.1.reasoning=thoughts"])
    with pytest.raises(ConfigError, match="unknown teachers"):
        load_distill_config(None, ["select.teacher_order=[gpt]"])
    with pytest.raises(ConfigError, match="formats must be"):
        load_distill_config(None, ["build.formats=[alpaca]"])
