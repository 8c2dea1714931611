"""``mede2 distill all`` end to end through the real openai SDK against the fake OpenAI-compatible
server: a reasoning_content teacher, a think-tag teacher and a summary-only teacher whose summary
is expanded; scripted replies reach every filter branch; the dataset loads in LLaMA-Factory; a
rerun makes no call. Teachers in the formats real ones use (the paper's own, an R1 distill without
the opening tag, DeepSeek's API with answer tags) give a Stage-I dataset llamafactory-cli trains on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from curate_helpers import (
    EXPAND_MARK,
    FIXTURES,
    DistillScript,
    backend,
    distill_config,
    fixture_questions,
    reasoning,
    which_question,
)

from mede2_plugin.cli import main
from mede2_plugin.core.chat_format import assistant_response, system_prompt, user_prompt
from mede2_plugin.core.jsonl import read_jsonl
from mede2_plugin.testing import FakeOpenAIServer, prompt_text

EXPECTED_REASONS = {
    "d1/r1/0": "passed", "d1/r1/1": "wrong_answer", "d1/qwq/0": "incoherent", "d1/qwq/1": "missing_boxed",
    "d1/o1/0": "passed",
    "d2/r1/0": "truncated", "d2/r1/1": "too_short", "d2/qwq/0": "truncated", "d2/qwq/1": "judge_unparsable",
    "d2/o1/0": "wrong_answer",
    "d3/r1/0": "passed", "d3/r1/1": "passed", "d3/qwq/0": "passed", "d3/qwq/1": "passed", "d3/o1/0": "passed",
    "d4/r1/0": "bad_structure", "d4/r1/1": "passed", "d4/qwq/0": "passed", "d4/qwq/1": "passed", "d4/o1/0": "passed",
}


@pytest.fixture()
def distill_run(tmp_path: Path):
    script = DistillScript(fixture_questions("distill_bank.jsonl"))
    with FakeOpenAIServer(reply=script.reply) as server:
        config_path = tmp_path / "distill.yaml"
        config_path.write_text(yaml.safe_dump({"distill": distill_config(tmp_path, server.base_url)}))
        yield server, config_path, tmp_path / "distill_out"


def test_distill_all_filters_every_branch_builds_dataset_and_resumes(distill_run, capsys):
    server, config_path, out = distill_run
    assert main(["distill", "all", "-c", str(config_path)]) == 0
    teacher_calls, expansion_calls, judge_calls = 3 * 4, 3, 13
    assert server.call_count == teacher_calls + expansion_calls + judge_calls
    assert "build" in capsys.readouterr().out

    traces = {t["id"]: t for t in read_jsonl(out / "generate" / "traces.jsonl")}
    assert set(traces) == set(EXPECTED_REASONS)  # d5 has images: left out (text-only Stage I)
    assert traces["d1/r1/0"]["source"] == "reasoning_content" and traces["d1/qwq/1"]["source"] == "think_tags"
    assert traces["d4/qwq/0"]["reasoning"].startswith("d4-qwq-0")  # missing opening <think>
    assert traces["d1/o1/0"]["source"] == "expanded" and traces["d1/o1/0"]["summary"].startswith("Summary:")
    assert traces["d2/o1/0"]["expansion"] == {"status": "skipped_wrong_answer"}
    assert traces["d2/r1/0"]["finish_reason"] == "length" and traces["d2/qwq/0"]["unclosed_think"]

    records = {r["id"]: r for r in read_jsonl(out / "filter" / "records.jsonl")}
    assert {k: r["reason"] for k, r in records.items()} == EXPECTED_REASONS
    assert records["d1/qwq/1"]["extracted"] == "B" and records["d1/qwq/0"]["judge"]["coherence"] == 2
    assert records["d1/o1/0"]["judge"]["score"] == 10

    # the expansion step: same conversation, the summary as the assistant turn, then the request
    expansion = next(c.body for c in server.calls if EXPAND_MARK in json.dumps(c.body))
    assert [m["role"] for m in expansion["messages"]] == ["user", "assistant", "user"]
    assert expansion["messages"][1]["content"].startswith("Summary:")
    assert expansion["max_completion_tokens"] == 4000 and "max_tokens" not in expansion
    d1 = fixture_questions("distill_bank.jsonl")[0]
    r1_body = next(c.body for c in server.calls if c.body["model"] == "r1-model" and d1.question in json.dumps(c.body))
    assert r1_body["n"] == 2 and r1_body["max_tokens"] == 60
    assert r1_body["messages"] == [{"role": "user", "content": user_prompt(d1).strip()}]  # Appendix-A user turn

    build = {r["id"]: r for r in read_jsonl(out / "build" / "records.jsonl")}
    assert build["d1"]["chosen"] == ["d1/o1/0"]  # highest judge score
    assert build["d2"]["reason"] == "no_passing_trace"
    assert build["d3"]["chosen"] == ["d3/r1/1"]  # equal scores: first teacher, then shorter reasoning
    assert build["d4"]["chosen"] == ["d4/r1/1"]
    assert build["d5"]["reason"] == "has_images"
    report = json.loads((out / "build" / "report.json").read_text())
    assert (report["input"], report["kept"]) == (5, 3)

    data = out / "data"
    info = json.loads((data / "dataset_info.json").read_text())
    assert info["mede2_stage1"] == {"file_name": "mede2_stage1.jsonl", "formatting": "mede2_sft"}
    assert info["mede2_stage1_messages"]["formatting"] == "sharegpt"
    samples = list(read_jsonl(data / "mede2_stage1.jsonl"))
    assert [(s["id"], s["teacher"]) for s in samples] == [("d1", "o1"), ("d3", "r1"), ("d4", "r1")]
    assert samples[0]["reasoning"].startswith("d1-o1-expanded") and "\\boxed{B}" in samples[0]["final"]
    messages = list(read_jsonl(data / "mede2_stage1_messages.jsonl"))
    assert messages[2]["messages"][0] == {"role": "system", "content": system_prompt()}
    assert messages[2]["messages"][2]["content"] == assistant_response(samples[2]["reasoning"], samples[2]["final"])

    # a rerun makes no call and writes the same dataset
    before = (data / "mede2_stage1.jsonl").read_text()
    calls = server.call_count
    assert main(["distill", "all", "-c", str(config_path)]) == 0
    assert server.call_count == calls
    assert (data / "mede2_stage1.jsonl").read_text() == before
    summary = json.loads((out / "report.json").read_text())
    assert all(step["model_calls"] == 0 for step in summary["steps"].values())


def test_stage1_dataset_loads_through_llamafactory(distill_run, tmp_path: Path):
    """Both entries convert with LLaMA-Factory's own parser and converters into the same conversation."""
    _, config_path, out = distill_run
    pytest.importorskip("llamafactory", reason="needs the llamafactory extra (pip install mede2-plugin[llamafactory])")
    assert main(["distill", "all", "-c", str(config_path)]) == 0
    import datasets
    from llamafactory.data.converter import get_dataset_converter
    from llamafactory.data.parser import get_dataset_list
    from llamafactory.hparams import DataArguments

    data = out / "data"
    converted = {}
    for attr in get_dataset_list(["mede2_stage1", "mede2_stage1_messages"], str(data)):
        rows = datasets.load_dataset("json", data_files=str(data / attr.dataset_name), split="train",
                                     cache_dir=str(tmp_path / "hf_cache"))
        converter = get_dataset_converter(attr.formatting, attr, DataArguments(dataset_dir=str(data)))
        converted[attr.formatting] = [converter(row) for row in rows]
    native, sharegpt = converted["mede2_sft"], converted["sharegpt"]
    assert len(native) == len(sharegpt) == 3
    for a, b in zip(native, sharegpt):
        assert a["_prompt"] == b["_prompt"] and a["_response"] == b["_response"] and a["_system"] == b["_system"]
        assert a["_response"][0]["content"].startswith("<think>\n") and "\\boxed{" in a["_response"][0]["content"]


def test_distill_errors_name_what_is_missing(tmp_path: Path, capsys):
    from curate_helpers import FIXTURES

    out = str(tmp_path / "out")
    assert main(["distill", "filter", "-o", out, "--questions", str(FIXTURES / "distill_bank.jsonl")]) == 2
    assert "run `mede2 distill generate` first" in capsys.readouterr().err
    bad = tmp_path / "bank.jsonl"
    bad.write_text((FIXTURES / "distill_bank.jsonl").read_text() + '{"id": "x", "source": "s"}\n')
    assert main(["distill", "generate", "-o", out, "--questions", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:line 6" in err and "missing question fields" in err


class RealFormatTeachers:
    """Teachers answering as real ones do (see ``tests/test_teacher_reply_formats.py`` for all of
    them): the paper's own format when asked with the Appendix-A system prompt, an R1 distill whose
    chat template opened ``<think>`` in the prompt, and DeepSeek's API with the answer in
    ``<answer>`` tags; the judge wraps its JSON in prose and a fence."""

    def __init__(self, questions) -> None:
        self.questions = questions

    def reply(self, body: dict, index: int):
        if body["model"] == "judge-model":
            return 'My rating:\n```json\n{"logical_structure": 5, "coherence": 4, "comment": "sound"}\n```\nDone.'
        question = which_question(body, self.questions)
        thought, letter = reasoning(f"{question.id}-{body['model']}"), question.answer
        if body["model"] == "paper-model":
            assert body["messages"][0] == {"role": "system", "content": system_prompt()}
            return f"<think>\n{thought}\n</think>\n<answer>\nIt is {letter}. \\boxed{{{letter}}}\n</answer>"
        if body["model"] == "r1-distill-model":
            return f"{thought}\n</think>\n\nThe answer is \\boxed{{{letter}}}."
        assert body["model"] == "deepseek-model" and "Put your final answer" in prompt_text(body)
        return {"message": {"role": "assistant", "content": f"<answer>It is {letter}. \\boxed{{{letter}}}</answer>",
                            "reasoning_content": thought}, "finish_reason": "stop"}


@pytest.mark.slow
def test_real_teacher_formats_give_a_stage1_dataset_llamafactory_trains_on(tmp_path: Path, tiny_model_dir: Path):
    """The paper-format teacher and the R1 distill without an opening <think> (and DeepSeek's API
    with <answer> tags) all pass the filter; the Stage-I dataset trains through llamafactory-cli."""
    pytest.importorskip("llamafactory", reason="needs the llamafactory extra (pip install mede2-plugin[llamafactory])")
    questions = fixture_questions("distill_bank.jsonl")
    with FakeOpenAIServer(reply=RealFormatTeachers(questions).reply) as server:
        config = {"questions": {"path": str(FIXTURES / "distill_bank.jsonl")},
                  "output_dir": str(tmp_path / "out"),
                  "teachers": [{"name": "paper", "backend": backend("paper-model", server.base_url), "samples": 1,
                                "paper_system": True},
                               {"name": "r1-distill", "backend": backend("r1-distill-model", server.base_url),
                                "samples": 1, "reasoning": "think_tags"},
                               {"name": "deepseek", "backend": backend("deepseek-model", server.base_url),
                                "samples": 1, "reasoning": "reasoning_content"}],
                  "filter": {"judge": backend("judge-model", server.base_url), "min_reasoning_chars": 100},
                  "build": {"formats": ["mede2_sft"]}}
        (tmp_path / "distill.yaml").write_text(yaml.safe_dump({"distill": config}))
        assert main(["distill", "all", "-c", str(tmp_path / "distill.yaml")]) == 0

    records = list(read_jsonl(tmp_path / "out" / "filter" / "records.jsonl"))
    assert len(records) == 12 and all(r["reason"] == "passed" for r in records), \
        [(r["id"], r["reason"]) for r in records if r["reason"] != "passed"]
    samples = list(read_jsonl(tmp_path / "out" / "data" / "mede2_stage1.jsonl"))
    assert [(s["id"], s["teacher"]) for s in samples] == [(q, "paper") for q in ("d1", "d2", "d3", "d4")]
    assert samples[0]["final"] == "It is B. \\boxed{B}" and samples[0]["reasoning"].startswith("d1-paper-model")

    import datasets
    from llamafactory.data.converter import get_dataset_converter
    from llamafactory.data.parser import get_dataset_list
    from llamafactory.hparams import DataArguments

    data = tmp_path / "out" / "data"
    (attr,) = get_dataset_list(["mede2_stage1"], str(data))
    rows = datasets.load_dataset("json", data_files=str(data / attr.dataset_name), split="train",
                                 cache_dir=str(tmp_path / "hf_cache"))
    converter = get_dataset_converter(attr.formatting, attr, DataArguments(dataset_dir=str(data)))
    target = converter(rows[0])["_response"][0]["content"]
    assert target == "<think>\n" + samples[0]["reasoning"] + "\n</think><answer>\nIt is B. \\boxed{B}\n</answer>"

    recipe = yaml.safe_load((Path(__file__).parents[1] / "examples" / "tiny" / "stage1_lora.yaml").read_text())
    recipe.update(model_name_or_path=str(tiny_model_dir), dataset_dir=str(data), output_dir=str(tmp_path / "lora"))
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(recipe))
    result = subprocess.run([str(Path(sys.executable).parent / "llamafactory-cli"), "train", str(tmp_path / "train.yaml")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-4000:])
    trained = json.loads((tmp_path / "lora" / "train_results.json").read_text())
    assert trained["train_loss"] > 0 and (tmp_path / "lora" / "adapter_model.safetensors").is_file()
