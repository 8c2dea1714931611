"""Question-bank loaders on small files written in the exact public layouts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_data_helpers import (
    MEDBULLETS_ROWS,
    MEDQA_ROWS,
    MEDXPERTQA_MM_ROWS,
    mmmu_pro_rows,
    write_medbullets_csv,
    write_medbullets_json,
    write_medqa,
    write_medxpertqa,
    write_mmmu,
    write_mmmu_pro,
)

from mede2_plugin.core.questions import (
    Question,
    QuestionFileError,
    read_questions,
    write_questions,
)
from mede2_plugin.data import (
    FORMATS,
    HEALTH_SUBJECTS,
    BankError,
    LoadResult,
    load_bank,
    register_format,
    strip_answer_choices,
)

# --- MedQA ------------------------------------------------------------------------------------

def test_medqa_five_options(tmp_path: Path) -> None:
    path = write_medqa(tmp_path / "US" / "test.jsonl")
    result = load_bank(path, "medqa")
    assert [q.answer for q in result] == ["E", "C", "A"]
    first = result.questions[0]
    assert first.id == "medqa-test-0" and first.source == "medqa"
    assert first.answer_text == "Cross-linking of DNA" and len(first.options) == 5
    assert first.metadata["meta_info"] == "step1" and first.metadata["source_line"] == 1
    assert "°C" in result.questions[2].question  # raw UTF-8 kept
    assert result.rejected == []


def test_medqa_four_options_drops_metamap_by_default(tmp_path: Path) -> None:
    path = write_medqa(tmp_path / "phrases_no_exclude_test.jsonl", four_options=True)
    result = load_bank(path, "medqa")
    assert all(len(q.options) == 4 for q in result)
    assert all(q.answer_text == row["answer"] for q, row in zip(result, MEDQA_ROWS))
    assert "metamap_phrases" not in result.questions[0].metadata
    kept = load_bank(path, "medqa", keep_metamap_phrases=True)
    assert kept.questions[0].metadata["metamap_phrases"] == ["man", "bladder", "ringing"]


def test_medqa_rejects_bad_rows_with_line_and_reason(tmp_path: Path) -> None:
    good = MEDQA_ROWS[0]
    inconsistent = {**MEDQA_ROWS[1], "answer_idx": "A"}         # options[A] != answer
    unknown_letter = {**MEDQA_ROWS[2], "answer_idx": "F"}
    path = tmp_path / "test.jsonl"
    path.write_text("\n".join([json.dumps(good), json.dumps(inconsistent), "{not json",
                               json.dumps(unknown_letter), "[1, 2]", ""]) + "\n", encoding="utf-8")
    result = load_bank(path, "medqa")
    assert len(result) == 1
    where = {r.record: r.reason for r in result.rejected}
    assert set(where) == {"line 2", "line 3", "line 4", "line 5"}
    assert "differs from option A" in where["line 2"]
    assert "not valid JSON" in where["line 3"]
    assert "not one of the options" in where["line 4"]
    assert all(r.file == str(path) for r in result.rejected)
    assert result.summary()["rejected"] == 4
    with pytest.raises(BankError, match=r"(?s)4 row\(s\) rejected.*line 2"):
        load_bank(path, "medqa", strict=True)


# --- Medbullets -------------------------------------------------------------------------------

@pytest.mark.parametrize("option_count", [4, 5])
def test_medbullets_csv_crlf_multiline(tmp_path: Path, option_count: int) -> None:
    path = write_medbullets_csv(tmp_path / f"medbullets_op{option_count}.csv", option_count)
    assert b"\r\n" in path.read_bytes()
    result = load_bank(path, "medbullets")
    assert result.rejected == []
    assert [q.source for q in result] == [f"medbullets_op{option_count}"] * 2
    first, second = result.questions
    assert len(first.options) == option_count and first.answer == "A"
    assert first.metadata["figure_not_shipped"] is True and first.images == []
    assert second.metadata["figure_not_shipped"] is False
    assert "Incorrect Answers:\nAnswer 2" in first.metadata["explanation"]
    assert first.metadata["link"] == MEDBULLETS_ROWS[0]["link"]
    assert second.answer_text == "Meningitis"


def test_medbullets_json_twin_matches_csv(tmp_path: Path) -> None:
    csv_result = load_bank(write_medbullets_csv(tmp_path / "op5.csv", 5), "medbullets")
    json_path = write_medbullets_json(tmp_path / "op5.json", 5)
    assert "\\u2019" in json_path.read_text()  # pandas escapes non-ASCII
    json_result = load_bank(json_path, "medbullets")
    assert [q.to_dict() | {"metadata": {}} for q in json_result] == \
        [q.to_dict() | {"metadata": {}} for q in csv_result]
    assert json_result.questions[0].metadata["figure_not_shipped"] is True


def test_medbullets_bad_row_reports_its_first_line(tmp_path: Path) -> None:
    bad = {"link": "x", "question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d",
           "answer_idx": "B", "answer": "c", "explanation": "line one\nline two"}
    path = write_medbullets_csv(tmp_path / "op4.csv", 4, extra_rows=[bad])
    result = load_bank(path, "medbullets")
    assert len(result) == 2
    [rejected] = result.rejected
    # header is line 1; each of the two good rows spans several lines (multi-line fields)
    lines = path.read_bytes().decode().splitlines()  # a text editor's line numbers
    assert lines[int(rejected.record.split()[1]) - 1].startswith("x,Q?,a,b,c,d,B,c,")
    assert "differs from option B" in rejected.reason


@pytest.mark.parametrize("after", [
    [b'y,Valid question?,a,b,c,d,A,a,fine\r\n'],  # the parser would read to the end of the file
    [b'y,Valid question?,a,b,c,d,A,a,fine\r\n',   # a later quote would close the field instead
     b'z,"Another, quoted",a,b,c,d,A,a,"two\r\nlines"\r\n'],
])
def test_medbullets_unclosed_quote_names_its_row_and_keeps_the_rows_after_it(tmp_path: Path,
                                                                           after: list[bytes]) -> None:
    good = write_medbullets_csv(tmp_path / "good.csv", 4).read_bytes()
    path = tmp_path / "op4.csv"
    path.write_bytes(good + b'x,"Q? a quote never closed,a,b,c,d,B,b,expl\r\n' + b"".join(after))
    bad_line = good.count(b"\n") + 1
    result = load_bank(path, "medbullets")
    [rejected] = result.rejected
    assert rejected.record == f"line {bad_line}" and "unbalanced quote" in rejected.reason
    assert [q.question for q in result][2:] == ["Valid question?", "Another, quoted"][:len(after)]
    # ids follow the file's row order, as in the JSON twin: the bad row keeps its number
    assert [q.id for q in result][2:] == [f"medbullets_op4-{3 + i}" for i in range(len(after))]


def test_csv_not_utf8_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "op4.csv"
    path.write_bytes(write_medbullets_csv(tmp_path / "good.csv", 4).read_bytes() + b"x,Caf\xe9?,a,b,c,d,A,a,e\r\n")
    last_line = path.read_bytes().count(b"\n")
    with pytest.raises(BankError, match=rf"op4.csv:line {last_line}: not UTF-8"):
        load_bank(path, "medbullets")
    with pytest.raises(BankError, match=r"mine.tsv:line 2: not UTF-8"):
        (tmp_path / "mine.tsv").write_bytes(b"question\tanswer\n\xff\tA\n")
        load_bank(tmp_path / "mine.tsv", "generic")


# --- MedXpertQA -------------------------------------------------------------------------------

@pytest.mark.parametrize("official_shape", [False, True])
def test_medxpertqa_mm_both_shapes(tmp_path: Path, official_shape: bool) -> None:
    path, images = write_medxpertqa(tmp_path, "MM", official_shape=official_shape)
    result = load_bank(path, "medxpertqa", images_dir=images)
    assert result.rejected == []
    first = result.questions[0]
    assert first.id == "medxpertqa-MM-0" and first.source == "medxpertqa_mm"
    assert "Answer Choices" not in first.question and first.question.endswith("rotatory stability?")
    assert first.images == [str(images / "MM-0-a.jpeg"), str(images / "MM-0-b.jpeg")]
    assert first.question_type == "Reasoning"
    assert first.metadata["medical_task"] == "Treatment" and first.metadata["body_system"] == "Skeletal"
    assert [q.answer for q in result] == [r["label"] for r in MEDXPERTQA_MM_ROWS]


def test_medxpertqa_text_and_missing_image(tmp_path: Path) -> None:
    path, _ = write_medxpertqa(tmp_path, "Text")
    result = load_bank(path, "medxpertqa")
    assert [q.source for q in result] == ["medxpertqa_text"] * 2
    assert all(len(q.options) == 10 for q in result) and result.questions[0].answer == "J"
    mm, images = write_medxpertqa(tmp_path / "mm", "MM")
    (images / "MM-1-a.png").unlink()
    partial = load_bank(mm, "medxpertqa", images_dir=images)
    assert [r.id for r in partial.rejected] == ["MM-1"] and "not found" in partial.rejected[0].reason
    assert len(load_bank(mm, "medxpertqa")) == 3  # no images_dir: names kept, not checked


def test_medxpertqa_rejects_bad_label(tmp_path: Path) -> None:
    rows = [dict(MEDXPERTQA_MM_ROWS[0], label=["A", "B"]), dict(MEDXPERTQA_MM_ROWS[1], label="Z")]
    path, images = write_medxpertqa(tmp_path, "MM", rows=rows)
    result = load_bank(path, "medxpertqa", images_dir=images)
    assert len(result) == 0
    assert [r.record for r in result.rejected] == ["line 1", "line 2"]
    assert "exactly one answer letter" in result.rejected[0].reason


def test_strip_answer_choices_keeps_inner_newlines() -> None:
    stem = "Labs:\nWBC 7.9\n\nWhat is the cause?"
    assert strip_answer_choices(stem + "\nAnswer Choices: (A) x (B) y") == stem
    assert strip_answer_choices(stem) == stem


# --- MMMU / MMMU-Pro --------------------------------------------------------------------------

def test_mmmu_health_subjects_images_and_options(tmp_path: Path) -> None:
    art = {"id": "validation_Art_1", "question": "Which? <image 1>", "options": "['x', 'y']", "answer": "A",
           "question_type": "multiple-choice", "images": [1]}
    open_question = {"id": "validation_Pharmacy_2", "question": "Compute the dose.", "options": "[]",
                     "answer": "12 mg", "question_type": "open", "images": []}
    bad_literal = {"id": "validation_Pharmacy_3", "question": "Which?", "options": "['a', 'b'",
                   "answer": "A", "question_type": "multiple-choice", "images": []}
    from test_data_helpers import MMMU_ROWS
    root = write_mmmu(tmp_path / "MMMU", [*MMMU_ROWS, art, open_question, bad_literal])
    write_mmmu(tmp_path / "MMMU", [dict(MMMU_ROWS[0], id="dev_Clinical_Medicine_9")], split="dev")
    out = tmp_path / "images"
    result = load_bank(root, "mmmu", images_dir=out, split="validation")
    assert [q.id for q in result] == ["mmmu-validation_Clinical_Medicine_1", "mmmu-validation_Pharmacy_1",
                                      "mmmu-validation_Public_Health_3"]
    assert result.skipped == {"subject Art not selected": 1}
    reasons = {r.id: r.reason for r in result.rejected}
    assert "open question" in reasons["validation_Pharmacy_2"]
    assert "list literal" in reasons["validation_Pharmacy_3"]
    clinical, pharmacy, public = result.questions
    assert clinical.options["B"] == "Serum lipase of 449 U/L" and clinical.answer == "A"
    assert clinical.metadata["subject"] == "Clinical_Medicine"
    assert clinical.metadata["img_type"] == ["Body Scans: MRI, CT scans, and X-rays"]
    assert pharmacy.options["C"] == "<image 3> (Paget's)" and len(pharmacy.images) == 3
    assert all(Path(p).read_bytes().startswith(b"\x89PNG") for p in pharmacy.images)
    assert Path(pharmacy.images[0]).name == "validation_Pharmacy_1_image_1.png"
    assert public.images == [] and public.options == {"A": "2", "B": "4", "C": "8", "D": "16"}
    again = load_bank(root, "mmmu", images_dir=out, split="validation")  # idempotent rewrite
    assert [q.images for q in again] == [q.images for q in result]


def test_mmmu_placeholder_without_image_is_rejected(tmp_path: Path) -> None:
    row = {"id": "validation_Pharmacy_5", "question": "See <image 2>", "options": "['a', 'b']",
           "answer": "A", "question_type": "multiple-choice", "images": [1]}
    root = write_mmmu(tmp_path, [row])
    result = load_bank(root, "mmmu", images_dir=tmp_path / "img")
    assert len(result) == 0 and "[2] have no image column" in result.rejected[0].reason
    assert result.rejected[0].record == "row 0"


def test_mmmu_pro_standard_ten_options(tmp_path: Path) -> None:
    folder = write_mmmu_pro(tmp_path / "MMMU_Pro")
    result = load_bank(folder, "mmmu_pro", images_dir=tmp_path / "img", min_options=10)
    assert [q.id for q in result] == ["mmmu_pro-test_Clinical_Medicine_73", "mmmu_pro-test_Pharmacy_246"]
    assert all(len(q.options) == 10 and q.source == "mmmu_pro" for q in result)
    assert result.questions[0].options["J"] == "Paget's disease" and result.questions[0].answer == "D"
    assert result.skipped == {"subject Art_Theory not selected": 1}
    everything = load_bank(folder, "mmmu_pro", images_dir=tmp_path / "img", subjects=None)
    assert len(everything) == 3
    short = [dict(mmmu_pro_rows()[0], options="['a', 'b', 'c', 'd']", answer="B")]
    four = write_mmmu_pro(tmp_path / "four", short)
    rejected = load_bank(four, "mmmu_pro", images_dir=tmp_path / "img", min_options=10).rejected
    assert "needs 10" in rejected[0].reason
    assert set(HEALTH_SUBJECTS) >= {"Clinical_Medicine", "Pharmacy"}


# --- generic, banks, registry -----------------------------------------------------------------

def test_generic_jsonl_medmcqa_style(tmp_path: Path) -> None:
    path = tmp_path / "medmcqa_dev.jsonl"
    rows = [{"id": "x1", "question": "Q1?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 2,
             "subject_name": "Physiology"},
            {"id": "x2", "question": "Q2?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 7}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = load_bank(path, "generic", source="medmcqa", mapping={"answer_index": "cop"},
                       option_columns=["opa", "opb", "opc", "opd"])
    [question] = result.questions
    assert question.id == "medmcqa-x1" and question.answer == "C"
    assert question.metadata["subject_name"] == "Physiology" and "opa" not in question.metadata
    assert result.rejected[0].record == "line 2" and "outside the 4 options" in result.rejected[0].reason


def test_generic_csv_with_json_options_and_answer_text(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text('qid,stem,choices,correct,pic\r\n'
                    'a,"Which?\nTwo lines","{""A"": ""x"", ""B"": ""y""}",y,img/1.png\r\n'
                    'b,Which two?,"[""p"", ""q"", ""r""]",z,\r\n', encoding="utf-8")
    result = load_bank(path, "generic", mapping={"id": "qid", "question": "stem", "options": "choices",
                                                "answer_text": "correct", "images": "pic"},
                       images_dir=tmp_path)
    [question] = result.questions
    assert question.answer == "B" and question.question == "Which?\nTwo lines"
    assert question.images == [str(tmp_path / "img" / "1.png")]
    assert result.rejected[0].record == "line 4" and "matches 0 options" in result.rejected[0].reason
    first_bad = tmp_path / "first.csv"
    first_bad.write_text("question,options,answer\r\nWhy?,\"[\"\"p\"\"]\",A\r\n", encoding="utf-8")
    assert load_bank(first_bad, "generic").rejected[0].record == "line 2"  # header is line 1
    with pytest.raises(BankError, match="unknown mapping keys"):
        load_bank(path, "generic", mapping={"stem": "question"})


def test_bank_roundtrip_and_bad_line(tmp_path: Path) -> None:
    questions = load_bank(write_medqa(tmp_path / "test.jsonl"), "medqa").questions
    bank = tmp_path / "bank.jsonl"
    assert write_questions(bank, questions) == 3
    assert read_questions(bank) == questions
    assert load_bank(bank, "bank").questions == questions
    with bank.open("a") as handle:
        handle.write(json.dumps({**questions[0].to_dict(), "id": "other", "answer": "Q"}) + "\n")
    with pytest.raises(QuestionFileError, match=r"bank.jsonl:line 4.*not one of the options"):
        read_questions(bank)
    with pytest.raises(QuestionFileError, match="duplicate question id"):
        write_questions(tmp_path / "dup.jsonl", [questions[0], questions[0]])


def test_registry_add_and_unknown(tmp_path: Path) -> None:
    def load_one(path: Path, **_: object) -> LoadResult:
        return LoadResult(questions=[Question(id="x", source="mine", question=path.read_text(),
                                              options={"A": "a", "B": "b"}, answer="A")])

    register_format("test_one_line", load_one)
    try:
        (tmp_path / "q.txt").write_text("Why?")
        assert load_bank(tmp_path / "q.txt", "test_one_line").questions[0].question == "Why?"
        with pytest.raises(ValueError, match="already registered"):
            register_format("test_one_line", lambda path: LoadResult())
    finally:
        FORMATS.pop("test_one_line")
    with pytest.raises(BankError, match="unknown question-bank format 'nope'"):
        load_bank(tmp_path / "q.txt", "nope")
    with pytest.raises(BankError, match="no such file"):
        load_bank(tmp_path / "missing.jsonl", "medqa")
