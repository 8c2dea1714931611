"""MedE2 dataset formats load through LLaMA-Factory's own pipeline; bad records name file and id."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mede2_plugin.core.chat_format import IMAGE_PLACEHOLDER, system_prompt
from mede2_plugin.core.dataset_info import (
    RegistrationConflict,
    merge_dataset_info,
    read_dataset_info,
)
from mede2_plugin.core.resources import examples_dir

SAMPLE_DIR = examples_dir() / "tiny" / "data"


def _aligned(dataset_dir: Path, name: str, stage: str = "sft"):
    """Run LLaMA-Factory's dataset loading (parser, loader, converter) up to the aligned rows."""
    from llamafactory.data.loader import _load_single_dataset
    from llamafactory.data.parser import get_dataset_list
    from llamafactory.hparams import DataArguments, ModelArguments
    from transformers import Seq2SeqTrainingArguments

    data_args = DataArguments(dataset=name, dataset_dir=str(dataset_dir), template="mede2_qwen2_vl")
    model_args = ModelArguments(model_name_or_path="unused")
    training_args = Seq2SeqTrainingArguments(output_dir=str(dataset_dir / "out"), report_to="none")
    attr = get_dataset_list([name], str(dataset_dir))[0]
    return _load_single_dataset(attr, model_args, data_args, training_args)


def _write(dir_: Path, name: str, rows: list[dict], **entry) -> None:
    with (dir_ / f"{name}.jsonl").open("w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    merge_dataset_info(dir_, {name: {"file_name": f"{name}.jsonl", **entry}})


def test_sft_format_builds_the_papers_conversation():
    rows = _aligned(SAMPLE_DIR, "mede2_stage1")
    first = rows[0]
    assert first["_system"] == system_prompt()
    user = first["_prompt"][0]["content"]
    assert user.startswith("A 54-year-old man") and user.endswith("Put your final answer within \\boxed{}.")
    assert "\nA. Electrocardiogram\nB. Chest CT" in user
    answer = first["_response"][0]["content"]
    assert answer.startswith("<think>\n") and answer.endswith("</think><answer>\n\\boxed{A}\n</answer>")
    assert len(rows) == 4


def test_pref_format_puts_one_placeholder_per_image_in_the_prompt_only():
    rows = _aligned(SAMPLE_DIR, "mede2_stage2")
    for row in rows:
        assert row["_prompt"][0]["content"].count(IMAGE_PLACEHOLDER) == len(row["_images"]) == 1
        assert Path(row["_images"][0]).is_file()  # resolved against the dataset folder
        chosen, rejected = row["_response"]
        assert IMAGE_PLACEHOLDER not in chosen["content"] + rejected["content"]
        assert chosen["content"] != rejected["content"]


@pytest.mark.parametrize(
    "row, message",
    [
        ({"id": "bad-1", "question": "Q?", "options": {"A": "x"}, "answer": "C", "reasoning": "r"},
         "answer 'C' is not one of the options"),
        ({"id": "bad-2", "question": "Q?", "options": {"A": "x"}, "answer": "A"}, "field 'reasoning'"),
        ({"id": "bad-3", "question": "Q?", "options": {"A": "x"}, "answer": "A", "reasoning": "r",
          "images": "one.png"}, "'images' must be a list"),
    ],
)
def test_malformed_sft_record_names_file_and_record(tmp_path, row, message):
    good = {"id": "ok", "question": "Q?", "options": {"A": "x", "B": "y"}, "answer": "A", "reasoning": "r"}
    _write(tmp_path, "broken", [good, row], formatting="mede2_sft")
    with pytest.raises(Exception) as info:
        _aligned(tmp_path, "broken")
    text = str(info.value)
    assert "broken.jsonl" in text and row["id"] in text and message in text


def test_pref_record_with_placeholder_in_response_is_refused(tmp_path):
    row = {"id": "p1", "prompt": "Look.", "images": [], "chosen": "<image> here", "rejected": "no"}
    _write(tmp_path, "prefs", [row], formatting="mede2_pref", ranking=True)
    with pytest.raises(Exception, match="prefs.jsonl: record 'p1'.*only in the prompt"):
        _aligned(tmp_path, "prefs")


def test_register_merges_idempotently_keeps_theirs_and_refuses_conflicts(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "dataset_info.json").write_text(json.dumps({"theirs": {"file_name": "t.json"}}))
    entries = read_dataset_info(SAMPLE_DIR)

    first = merge_dataset_info(project, entries, source_dir=SAMPLE_DIR)
    assert sorted(first.added) == ["mede2_stage1", "mede2_stage2"]
    info = read_dataset_info(project)
    assert info["theirs"] == {"file_name": "t.json"}
    assert (project / info["mede2_stage1"]["file_name"]).resolve() == (SAMPLE_DIR / "stage1_sample.jsonl").resolve()

    mtime = (project / "dataset_info.json").stat().st_mtime_ns
    again = merge_dataset_info(project, entries, source_dir=SAMPLE_DIR)
    assert again.added == [] and sorted(again.unchanged) == ["mede2_stage1", "mede2_stage2"]
    assert (project / "dataset_info.json").stat().st_mtime_ns == mtime  # nothing rewritten

    other = {"mede2_stage1": {"file_name": "other.jsonl", "formatting": "mede2_sft"}}
    with pytest.raises(RegistrationConflict, match="mede2_stage1"):
        merge_dataset_info(project, other)
    assert read_dataset_info(project)["mede2_stage1"] == info["mede2_stage1"]
    assert merge_dataset_info(project, other, force=True).replaced == ["mede2_stage1"]


def test_register_cli_makes_bundled_datasets_loadable_from_another_project(tmp_path):
    from mede2_plugin.cli import main

    project = tmp_path / "elsewhere"
    assert main(["register", "--dataset-dir", str(project)]) == 0
    assert main(["register", "--dataset-dir", str(project)]) == 0  # idempotent
    rows = _aligned(project, "mede2_stage2")
    assert len(rows) == 4 and all(Path(r["_images"][0]).is_file() for r in rows)
    (project / "dataset_info.json").write_text(json.dumps({"mede2_stage1": {"file_name": "mine.jsonl"}}))
    assert main(["register", "--dataset-dir", str(project)]) == 1
    assert read_dataset_info(project)["mede2_stage1"] == {"file_name": "mine.jsonl"}


def test_register_reports_a_broken_dataset_info_by_path(tmp_path):
    (tmp_path / "dataset_info.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"dataset_info.json: not valid JSON"):
        merge_dataset_info(tmp_path, {"x": {"file_name": "x.jsonl"}})
