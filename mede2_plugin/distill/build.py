"""The Stage-I dataset: the chosen trace(s) per question as LLaMA-Factory training data.

Selection (:func:`rank_traces`, rule in :class:`~mede2_plugin.distill.config.SelectConfig`) picks
among the traces that passed the filter. Outputs in ``dataset_dir``:

* ``<dataset_name>.jsonl``: native ``mede2_sft`` records (``id, question, options, answer,
  reasoning, images, patient_info, final``, plus ``question_id``, ``teacher``, ``trace_id``);
* ``<dataset_name>_messages.jsonl``: the paper's Appendix-A OpenAI messages (system, user,
  assistant ``<think>..</think><answer>..</answer>``);
* ``dataset_info.json``: their entries, merged into an existing file (other entries kept).

``build/records.jsonl`` says for every question which trace was chosen, or why none was.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from mede2_plugin.core.chat_format import (
    IMAGE_PLACEHOLDER,
    assistant_response,
    boxed,
    system_prompt,
    user_prompt,
)
from mede2_plugin.core.jsonl import read_jsonl, write_jsonl
from mede2_plugin.core.questions import Question
from mede2_plugin.core.steps import StepReport
from mede2_plugin.distill.config import DistillConfig, SelectConfig
from mede2_plugin.distill.generate import select_questions

SHAREGPT_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                 "assistant_tag": "assistant", "system_tag": "system"}


def rank_traces(passing: list[dict[str, Any]], cfg: SelectConfig, teachers: list[str]) -> list[dict[str, Any]]:
    """Passing filter records of one question, best first: judge score (high first), teacher order,
    reasoning length (``prefer``), sample number."""
    order = cfg.teacher_order or teachers
    rank = {name: i for i, name in enumerate(order)}
    sign = 1 if cfg.prefer == "shorter" else -1

    def key(record: dict[str, Any]) -> tuple:
        score = (record.get("judge") or {}).get("score") or 0
        return (-score, rank.get(record["teacher"], len(rank)), sign * record["reasoning_chars"], record["sample"])

    return sorted(passing, key=key)


def sft_record(question: Question, trace: dict[str, Any], record_id: str, final_mode: str) -> dict[str, Any]:
    """A native ``mede2_sft`` record (read by the ``mede2_sft`` LLaMA-Factory converter)."""
    final = trace["final"].strip() if final_mode == "teacher" else boxed(question.answer)
    return {"id": record_id, "question": question.question, "options": question.options, "answer": question.answer,
            "reasoning": trace["reasoning"].strip(), "images": list(question.images),
            "patient_info": question.patient_info, "final": final,
            "question_id": question.id, "teacher": trace["teacher"], "trace_id": trace["id"]}


def messages_record(sft: dict[str, Any]) -> dict[str, Any]:
    """The paper's Appendix-A form of a native record: OpenAI-style system, user, assistant turns."""
    prompt = user_prompt(question=sft["question"], options=sft["options"], patient_info=sft["patient_info"])
    record = {"id": sft["id"], "messages": [
        {"role": "system", "content": system_prompt()},
        {"role": "user", "content": IMAGE_PLACEHOLDER * len(sft["images"]) + prompt},
        {"role": "assistant", "content": assistant_response(sft["reasoning"], sft["final"])}]}
    if sft["images"]:
        record["images"] = sft["images"]
    return record


def dataset_entries(config: DistillConfig, with_images: bool) -> dict[str, dict[str, Any]]:
    """The ``dataset_info.json`` entries of the files :func:`run_build` writes."""
    name, formats = config.build.dataset_name, config.build.formats
    entries = {}
    if "mede2_sft" in formats:
        entries[name] = {"file_name": f"{name}.jsonl", "formatting": "mede2_sft"}
    if "messages" in formats:
        messages_name = name if formats == ["messages"] else f"{name}_messages"
        columns = {"messages": "messages", **({"images": "images"} if with_images else {})}
        entries[messages_name] = {"file_name": f"{messages_name}.jsonl", "formatting": "sharegpt",
                                  "columns": columns, "tags": dict(SHAREGPT_TAGS)}
    return entries


def run_build(questions: list[Question], config: DistillConfig) -> StepReport:
    """Choose traces, write the dataset files and merge their ``dataset_info.json`` entries."""
    from mede2_plugin.core.dataset_info import merge_dataset_info

    filter_path = config.out / "filter" / "records.jsonl"
    traces_path = config.out / "generate" / "traces.jsonl"
    for path, step in ((traces_path, "generate"), (filter_path, "filter")):
        if not path.exists():
            raise FileNotFoundError(f"{path}: not there yet; run `mede2 distill {step}` first")
    traces = {t["id"]: t for t in read_jsonl(traces_path)}
    by_question: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in read_jsonl(filter_path):
        by_question[record["question_id"]].append(record)
    teachers = [t.name for t in config.teachers]
    per_question = config.select.traces_per_question
    usable, records = select_questions(questions, config)  # left out by generate, same reasons
    samples: list[dict[str, Any]] = []
    for question in usable:
        candidates = by_question.get(question.id, [])
        passing = [r for r in candidates if r["passed"]]
        if not candidates:
            records.append({"id": question.id, "kept": False, "reason": "no_traces"})
            continue
        if not passing:
            pending = any(r["reason"].startswith("pending") for r in candidates)
            reasons = Counter(r["reason"] for r in candidates)
            records.append({"id": question.id, "kept": False,
                            "reason": "pending_traces" if pending else "no_passing_trace",
                            "trace_reasons": dict(reasons)})
            continue
        chosen = rank_traces(passing, config.select, teachers)[:per_question]
        for rank, record in enumerate(chosen):
            record_id = question.id if per_question == 1 else f"{question.id}#{rank}"
            samples.append(sft_record(question, traces[record["id"]], record_id, config.build.final))
        records.append({"id": question.id, "kept": True, "reason": "kept",
                        "chosen": [r["id"] for r in chosen], "passing": len(passing), "candidates": len(candidates)})
    folder = config.out / "build"
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "records.jsonl", records)
    dataset_dir = config.dataset_dir
    entries = dataset_entries(config, with_images=any(s["images"] for s in samples))
    outputs = {"records": str(folder / "records.jsonl")}
    for name, entry in entries.items():
        path = dataset_dir / entry["file_name"]
        rows = samples if entry["formatting"] == "mede2_sft" else [messages_record(s) for s in samples]
        write_jsonl(path, rows)
        outputs[name] = str(path)
    merged = merge_dataset_info(dataset_dir, entries, force=config.build.force)
    outputs["dataset_info"] = str(merged.target)
    report = StepReport.from_records(
        "build", records, outputs=outputs,
        extra={"samples": len(samples), "samples_by_teacher": dict(Counter(s["teacher"] for s in samples)),
               "dataset_entries": sorted(entries), "dataset_dir": str(dataset_dir)})
    report.write(folder / "report.json")
    return report
