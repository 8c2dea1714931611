"""Writers of small benchmark files in the exact public layouts (shared by data and evaluate tests).

Rows are shaped like the published files (see docs of mede2_plugin.data.*): MedQA JSONL,
Medbullets CSV (CRLF, quoted multi-line fields) and its pandas column-oriented JSON twin,
MedXpertQA JSONL in the Hugging Face and the official-eval shapes with image files, MMMU and
MMMU-Pro parquet with embedded ``{bytes, path}`` image structs.
"""

from __future__ import annotations

import csv
import io
import json
import string
from pathlib import Path
from typing import Any

MEDQA_ROWS = [
    {"question": "A 67-year-old man with transitional cell carcinoma of the bladder has ringing in his ear "
                 "after chemotherapy. The expected beneficial effect of the drug is most likely due to which action?",
     "answer": "Cross-linking of DNA",
     "options": {"A": "Inhibition of thymidine synthesis", "B": "Inhibition of proteasome",
                 "C": "Hyperstabilization of microtubules", "D": "Generation of free radicals",
                 "E": "Cross-linking of DNA"},
     "meta_info": "step1", "answer_idx": "E"},
    {"question": "A 61-year-old man has decreased urinary output.\nLaboratory studies show:\nCreatinine 4.2 mg/dL\n"
                 "Renal biopsy shows intravascular spindle-shaped vacuoles. Which is the most likely cause?\"",
     "answer": "Cholesterol embolization",
     "options": {"A": "Renal papillary necrosis", "B": "Allergic interstitial nephritis",
                 "C": "Cholesterol embolization", "D": "Eosinophilic granulomatosis with polyangiitis",
                 "E": "Polyarteritis nodosa"},
     "meta_info": "step2&3", "answer_idx": "C"},
    {"question": "Temperature is 38°C (100.4°F). Which of the following is the most appropriate next step?",
     "answer": "Reassurance",
     "options": {"A": "Reassurance", "B": "Antibiotics", "C": "CT scan", "D": "Lumbar puncture",
                 "E": "Admission"},
     "meta_info": "step2&3", "answer_idx": "A"},
]


def write_medqa(path: Path, rows: list[dict[str, Any]] | None = None, four_options: bool = False) -> Path:
    """MedQA ``US/test.jsonl`` (or ``4_options/phrases_no_exclude_test.jsonl``) layout."""
    rows = [dict(r) for r in (rows or MEDQA_ROWS)]
    if four_options:
        for row in rows:
            letters = [k for k in row["options"] if k != "E" or row["answer_idx"] == "E"][:4]
            texts = [row["options"][k] for k in letters]
            if row["answer"] not in texts:
                texts[-1] = row["answer"]
            row["options"] = dict(zip("ABCD", texts))
            row["answer_idx"] = "ABCD"[texts.index(row["answer"])]
            row["metamap_phrases"] = ["man", "bladder", "ringing"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


MEDBULLETS_ROWS = [
    {"link": "https://step2.medbullets.com/testview?qid=108992",
     "question": "A 64-year-old man presents with a headache and nausea. The patient\u2019s right eye is shown "
                 "in Figure A. Which of the following is the most appropriate prophylaxis?",
     "options": ["Acetazolamide", "Amitriptyline", "Clopidogrel", "Epinephrine", "Verapamil"],
     "answer_idx": "A",
     "explanation": "Acute angle-closure glaucoma.\n\nIncorrect Answers:\nAnswer 2: Amitriptyline, \"quoted\"."},
    {"link": "https://bit.ly/47KxMQs",
     "question": "A 9-year-old girl presents with fever and a stiff neck, 98.6\u00b0F. Which is the most likely diagnosis?",
     "options": ["Gastroenteritis", "Intentional contamination", "Meningitis", "Urinary tract infection",
                 "Otitis media"],
     "answer_idx": "C", "explanation": "Meningitis, classic triad."},
]


def _medbullets_table(option_count: int) -> tuple[list[str], list[dict[str, str]]]:
    letters = "abcde"[:option_count]
    header = ["link", "question", *[f"op{c}" for c in letters], "answer_idx", "answer", "explanation"]
    rows = []
    for row in MEDBULLETS_ROWS:
        options = row["options"][:option_count]
        record = {"link": row["link"], "question": row["question"], "answer_idx": row["answer_idx"],
                  "answer": options["ABCDE".index(row["answer_idx"])], "explanation": row["explanation"]}
        record.update({f"op{c}": text for c, text in zip(letters, options)})
        rows.append(record)
    return header, rows


def write_medbullets_csv(path: Path, option_count: int = 4, extra_rows: list[dict[str, str]] = ()) -> Path:
    """``medbullets_op4.csv`` / ``op5``: CRLF, quoted fields with embedded newlines."""
    header, rows = _medbullets_table(option_count)
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\r\n")
    writer.writeheader()
    for row in [*rows, *extra_rows]:
        writer.writerow(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue().encode("utf-8"))
    return path


def write_medbullets_json(path: Path, option_count: int = 4) -> Path:
    """The pandas column-oriented ``.json`` twin (``{"question": {"0": ...}}``), ASCII-escaped."""
    import pandas as pd

    header, rows = _medbullets_table(option_count)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=header).to_json(path)
    return path


MEDXPERTQA_MM_ROWS = [
    {"id": "MM-0", "question": "A 26-year-old man falls from a ladder. Radiographs are shown in Figures A and B. "
                               "Which surgical step contributes the most to rotatory stability?",
     "options": {"A": "Lateral collateral ligament repair", "B": "Capsular plication", "C": "Radial head replacement",
                 "D": "Radial head ORIF", "E": "Medial collateral ligament reconstruction"},
     "label": "A", "images": ["MM-0-a.jpeg", "MM-0-b.jpeg"], "medical_task": "Treatment",
     "body_system": "Skeletal", "question_type": "Reasoning"},
    {"id": "MM-1", "question": "This patient presents for mammographic needle localization of a bar clip. "
                               "What is the MOST optimal  approach?",
     "options": {"A": "Lateral", "B": "Inferior", "C": "Medial", "D": "Superior", "E": "Oblique"},
     "label": "D", "images": ["MM-1-a.png"], "medical_task": "Basic Science",
     "body_system": "Reproductive", "question_type": "Understanding"},
    {"id": "MM-2", "question": "A peripheral blood smear is shown in Figure A. What is the most likely cause?",
     "options": {"A": "Autoantibody hemolysis", "B": "RBC structural defect", "C": "HAART side effect",
                 "D": "Glycolytic enzyme deficiency", "E": "TMP-SMX adverse effect"},
     "label": "E", "images": ["MM-2-a.jpeg"], "medical_task": "Diagnosis",
     "body_system": "Hematologic", "question_type": "Reasoning"},
]

MEDXPERTQA_TEXT_ROWS = [
    {"id": "Text-20", "question": "A 57-year-old male presents with weakness and fever. What is the most likely "
                                  "explanation for this patient's condition?",
     "options": dict(zip(string.ascii_uppercase, [f"Explanation {i}" for i in range(10)])),
     "label": "J", "medical_task": "Diagnosis", "body_system": "Digestive", "question_type": "Reasoning"},
    {"id": "Text-1001", "question": "Which physical findings best describe cubitus varus?",
     "options": dict(zip(string.ascii_uppercase, [f"Finding {i}" for i in range(10)])),
     "label": "B", "medical_task": "Basic Science", "body_system": "Skeletal", "question_type": "Understanding"},
]


def with_answer_choices(row: dict[str, Any]) -> dict[str, Any]:
    """Append MedXpertQA's "\\nAnswer Choices: (A) ... (B) ..." line to the question."""
    choices = " ".join(f"({k}) {v}" for k, v in row["options"].items())
    return {**row, "question": row["question"] + "\nAnswer Choices: " + choices}


def to_official_eval_shape(row: dict[str, Any]) -> dict[str, Any]:
    """The official evaluation code's shape: options as [{letter, content}], label ["A"], images [{image_path}]."""
    out = {**row, "options": [{"letter": k, "content": v} for k, v in row["options"].items()],
           "label": [row["label"]]}
    if "images" in row:
        out["images"] = [{"image_path": name} for name in row["images"]]
    return out


def png_bytes(color: tuple[int, int, int] = (200, 30, 30), size: int = 8) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


def write_medxpertqa(folder: Path, subset: str = "MM", official_shape: bool = False,
                     rows: list[dict[str, Any]] | None = None) -> tuple[Path, Path]:
    """``{MM,Text}/test.jsonl`` and the unzipped ``images/`` folder; returns (jsonl, images dir)."""
    rows = rows if rows is not None else (MEDXPERTQA_MM_ROWS if subset == "MM" else MEDXPERTQA_TEXT_ROWS)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    for row in rows:
        for name in row.get("images", []):
            (images / name).write_bytes(png_bytes())
    shaped = [with_answer_choices(r) for r in rows]
    if official_shape:
        shaped = [to_official_eval_shape(r) for r in shaped]
    path = folder / subset / "test.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in shaped), encoding="utf-8")
    return path, images


MMMU_ROWS = [
    {"id": "validation_Clinical_Medicine_1", "question": "The patient shown in <image 1> most likely has which finding?",
     "options": "['Erythrocyte sedimentation rate of 50 mm/hr', 'Serum lipase of 449 U/L', 'Proteinuria']",
     "explanation": "", "img_type": "['Body Scans: MRI, CT scans, and X-rays']", "answer": "A",
     "topic_difficulty": "Medium", "question_type": "multiple-choice", "subfield": "Clinical Radiology",
     "images": [1]},
    {"id": "validation_Pharmacy_1", "question": "Which structure is a saturated hydrocarbon?",
     "options": "['<image 1>', '<image 2>', \"<image 3> (Paget's)\"]",
     "explanation": "?", "img_type": "['Chemical Structures']", "answer": "C",
     "topic_difficulty": "Easy", "question_type": "multiple-choice", "subfield": "Organic", "images": [1, 2, 3]},
    {"id": "validation_Public_Health_3", "question": "What is the incidence rate per 1000?",
     "options": "['2', '4', '8', '16']", "explanation": "", "img_type": "['Tables']", "answer": "B",
     "topic_difficulty": "Hard", "question_type": "multiple-choice", "subfield": "Epidemiology", "images": []},
]


def mmmu_table(rows: list[dict[str, Any]], pro: bool = False):
    """A pyarrow table in the MMMU (or MMMU-Pro standard) column layout."""
    import pyarrow as pa

    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    columns: dict[str, list[Any]] = {"id": [], "question": [], "options": [], "explanation": []}
    for n in range(1, 8):
        columns[f"image_{n}"] = []
    extra = ["img_type", "answer", "topic_difficulty"] + (["subject"] if pro else ["question_type", "subfield"])
    for key in extra:
        columns[key] = []
    for row in rows:
        for key in ("id", "question", "options", "explanation", *extra):
            columns[key].append(row.get(key))
        for n in range(1, 8):
            columns[f"image_{n}"].append(
                {"bytes": png_bytes((20 * n, 100, 100)), "path": f"{row['id']}_{n}.png"}
                if n in row.get("images", []) else None)
    schema = pa.schema([(name, image_type if name.startswith("image_") else pa.string()) for name in columns])
    return pa.table(columns, schema=schema)


def write_mmmu(root: Path, rows: list[dict[str, Any]] | None = None, split: str = "validation") -> Path:
    """``<Subject>/{split}-00000-of-00001.parquet`` per subject; returns the root folder."""
    import pyarrow.parquet as pq

    rows = rows if rows is not None else MMMU_ROWS
    by_subject: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        subject = row["id"].split("_", 1)[1].rsplit("_", 1)[0]
        by_subject.setdefault(subject, []).append(row)
    for subject, subject_rows in by_subject.items():
        folder = root / subject
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(mmmu_table(subject_rows), folder / f"{split}-00000-of-00001.parquet")
    return root


def mmmu_pro_rows() -> list[dict[str, Any]]:
    texts = ["Gout", "Osteomalacia", "Marfan Syndrome", "Renal osteodystrophy", "Bone cancer", "Osteoporosis",
             "Rheumatoid arthritis", "Sickle cell disease", "Ankylosing spondylitis", "Paget's disease"]
    return [
        {"id": "test_Clinical_Medicine_73", "question": "The patient shown below most likely has which of the following? <image 1> ",
         "options": repr(texts), "explanation": "?", "img_type": "['Body Scans: MRI, CT scans, and X-rays']",
         "answer": "D", "topic_difficulty": "Medium", "subject": "Clinical_Medicine", "images": [1]},
        {"id": "test_Pharmacy_246", "question": "Which drug is a beta blocker? <image 1>",
         "options": repr([f"Drug {i}" for i in range(10)]), "explanation": "?", "img_type": "['Photographs']",
         "answer": "H", "topic_difficulty": "Easy", "subject": "Pharmacy", "images": [1]},
        {"id": "test_Art_Theory_5", "question": "Which painting is cubist? <image 1>",
         "options": repr([f"Painting {i}" for i in range(10)]), "explanation": "?", "img_type": "['Paintings']",
         "answer": "A", "topic_difficulty": "Easy", "subject": "Art_Theory", "images": [1]},
    ]


def write_mmmu_pro(root: Path, rows: list[dict[str, Any]] | None = None) -> Path:
    """``standard (10 options)/test-00000-of-00001.parquet``; returns that folder."""
    import pyarrow.parquet as pq

    folder = root / "standard (10 options)"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(mmmu_table(rows if rows is not None else mmmu_pro_rows(), pro=True),
                   folder / "test-00000-of-00001.parquet")
    return folder
